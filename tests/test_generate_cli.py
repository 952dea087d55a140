"""``python -m flax_musicvae.generate``: outputs of every mode, user errors exit 2 cleanly."""

import os
import subprocess
import sys

import numpy as np
import pytest
from scipy.io import wavfile

from conftest import ROOT
from flax_musicvae import attributes
from flax_musicvae import audio_taps
from flax_musicvae import config_lib
from flax_musicvae import generate
from flax_musicvae import inference
from flax_musicvae import render
from test_groove_tasks import BEAT, clip



@pytest.fixture(scope="module")
def workdirs(tmp_path_factory):
  root = tmp_path_factory.mktemp("runs")
  with pytest.MonkeyPatch.context() as mp:
    mp.setattr(inference.loading, "CACHE_DIR", root / "cache")
    # The persistent XLA cache is process-wide: keep it out of this pytest process
    # (test_cli_fills_its_caches runs the CLI in a subprocess to check it).
    mp.setattr(inference, "enable_compilation_cache", lambda: None)
    out = {}
    for name in ("groove_2bar_humanize", "groove_2bar_tap_fixed_velocity"):
      cfg = config_lib.tiny(config_lib.load(f"{name}"))
      out[name] = str(inference.MusicVAEModel.init_random(cfg, seed=2).save(root / name))
    yield out


def bars_of_beat(path, bars: int, start_bar: int = 0):
  """Notes of the Groove beat that quantize into ``bars`` bars, written as a MIDI file."""
  return render.write_midi(clip(bars, start_bar), path)


def run(capsys, *argv):
  """Runs the CLI in-process: (exit code, stdout, stderr)."""
  try:
    code = generate.main(list(argv))
  except SystemExit as e:
    code = e.code
  captured = capsys.readouterr()
  return code, captured.out, captured.err


def written(out: str, suffix: str) -> list[str]:
  return [line.split(" ", 1)[1] for line in out.splitlines()
          if line.startswith("wrote ") and line.endswith(suffix)]


def test_help_lists_modes_attributes_and_corners():
  res = subprocess.run([sys.executable, "-m", "flax_musicvae.generate", "--help"], cwd=ROOT,
                       capture_output=True, text=True, check=True)
  for mode in generate.MODES:
    assert mode in res.stdout
  for name in attributes.ATTRIBUTES:
    assert name in res.stdout
  for i, corner in enumerate(("top-left", "top-right", "bottom-left", "bottom-right")):
    assert f"--input_midi_{i + 1} {corner}" in " ".join(res.stdout.split())
  assert "--input_wav" in res.stdout and "exit with status 2" in res.stdout


def test_sample_writes_midi_and_png_deterministically(workdirs, capsys, tmp_path):
  args = ["--workdir", workdirs["groove_2bar_humanize"], "--mode=sample", "--num_outputs=2",
          "--seed=4"]
  code, out, _ = run(capsys, *args, f"--output_dir={tmp_path / 'a'}")
  assert code == 0
  mids, pngs = written(out, ".mid"), written(out, ".png")
  assert len(mids) == 2 and len(pngs) == 1
  assert "groovae_2bar_humanize_sample_" in mids[0] and mids[0].endswith("-001-of-002.mid")
  assert open(pngs[0], "rb").read(8) == b"\x89PNG\r\n\x1a\n"
  ns = inference.read_midi(mids[0])
  assert ns.tempos[0].qpm == pytest.approx(120) and all(n.is_drum for n in ns.notes)
  # Output i uses seed + i: --seed=5 --num_outputs=1 re-makes the second file alone.
  _, again, _ = run(capsys, *args[:-2], "--num_outputs=1", "--seed=5",
                    f"--output_dir={tmp_path / 'b'}", "--no-png")
  assert not written(again, ".png")
  (alone,) = written(again, ".mid")
  assert inference.read_midi(alone).notes == inference.read_midi(mids[1]).notes
  assert inference.read_midi(alone).notes != inference.read_midi(mids[0]).notes


def test_interpolate_and_encode(workdirs, capsys, tmp_path):
  a = bars_of_beat(tmp_path / "a.mid", 2)
  b = bars_of_beat(tmp_path / "b.mid", 2, start_bar=4)
  code, out, _ = run(capsys, "--workdir", workdirs["groove_2bar_humanize"],
                     "--mode=interpolate", f"--input_midi_1={a}", f"--input_midi_2={b}",
                     "--num_steps=3", "--method=lerp", f"--output_dir={tmp_path}")
  assert code == 0 and len(written(out, ".mid")) == 3 and len(written(out, ".png")) == 1
  code, out, _ = run(capsys, "--workdir", workdirs["groove_2bar_humanize"], "--mode=encode",
                     f"--input_midi_1={a}", f"--input_midi_2={b}", f"--output_dir={tmp_path}")
  assert code == 0
  (npz,) = [w.split(" ")[1] for w in out.splitlines() if w.startswith("wrote ")]
  with np.load(npz) as f:
    assert f["z"].shape == f["mu"].shape == (2, 4)


def test_interpolate_long_input_writes_candidates(workdirs, capsys, tmp_path):
  long = bars_of_beat(tmp_path / "long.mid", 4)
  code, out, err = run(capsys, "--workdir", workdirs["groove_2bar_humanize"],
                       "--mode=interpolate", f"--input_midi_1={long}",
                       f"--input_midi_2={long}", f"--output_dir={tmp_path}")
  assert code == 2 and err.startswith("error: ") and "2 candidate 2-bar windows" in err
  assert "(bars 1-2, 3-4); pass --start_bar=N" in err and err.count("\n") == 1
  assert len([m for m in written(out, ".mid") if "_candidates-" in m]) == 2


def test_long_groove_file_encode_decode_reconstruct_similar(workdirs, capsys, tmp_path):
  """A whole Groove file (54 bars): --start_bar picks the window; decode of encode's mu
  is the reconstruction of that window; similar writes its variations; --qpm sets the
  tempo."""
  beat = str(BEAT)
  common = ["--workdir", workdirs["groove_2bar_humanize"], f"--input_midi_1={beat}",
            "--temperature=0"]
  code, _, err = run(capsys, *common, "--mode=encode", f"--output_dir={tmp_path}")
  assert code == 2 and "bars 1-2, 3-4, 5-6" in err and "--start_bar" in err
  code, out, _ = run(capsys, *common, "--mode=encode", "--start_bar=3",
                     f"--output_dir={tmp_path}")
  assert code == 0
  (npz,) = [w.split(" ")[1] for w in out.splitlines() if w.startswith("wrote ")]
  with np.load(npz) as f:
    assert list(f["start_bars"]) == [3]
  qpm = inference.read_midi(beat).tempos[0].qpm
  code, out, _ = run(capsys, "--workdir", workdirs["groove_2bar_humanize"], "--mode=decode",
                     f"--input_npz={npz}", "--temperature=0", f"--qpm={qpm}",
                     f"--output_dir={tmp_path / 'decoded'}")
  assert code == 0
  (decoded,) = written(out, ".mid")
  code, out, _ = run(capsys, *common, "--mode=reconstruct", "--start_bar=3",
                     f"--output_dir={tmp_path / 'reconstructed'}")
  assert code == 0
  (rebuilt,) = written(out, ".mid")
  a, b = inference.read_midi(decoded), inference.read_midi(rebuilt)
  assert len(a.notes) == len(b.notes) > 0
  assert b.tempos[0].qpm == pytest.approx(qpm, rel=1e-4)
  key = lambda n: (n.pitch, n.start_time)  # noqa: E731
  for x, y in zip(sorted(a.notes, key=key), sorted(b.notes, key=key)):
    assert (x.pitch, x.velocity) == (y.pitch, y.velocity)
    assert x.start_time == pytest.approx(y.start_time, abs=2e-3)
  code, out, _ = run(capsys, *common, "--mode=similar", "--start_bar=3", "--num_outputs=2",
                     "--similarity=0.5", "--qpm=100", "--no-png",
                     f"--output_dir={tmp_path / 'similar'}")
  assert code == 0
  mids = written(out, ".mid")
  assert len(mids) == 2 and inference.read_midi(mids[0]).tempos[0].qpm == pytest.approx(100)


def test_humanize_long_input(workdirs, capsys, tmp_path, monkeypatch):
  src = bars_of_beat(tmp_path / "in.mid", 5)
  drawn = []
  save_png = render.save_png
  monkeypatch.setattr(render, "save_png", lambda seqs, *a: drawn.append(seqs) or save_png(seqs, *a))
  code, out, _ = run(capsys, "--workdir", workdirs["groove_2bar_humanize"], "--mode=humanize",
                     f"--input_midi_1={src}", f"--output_dir={tmp_path}", "--wav")
  assert code == 0
  (mid,) = written(out, ".mid")
  ns = inference.read_midi(mid)
  # The picture shows the input above the humanized output.
  (shown,) = drawn
  assert len(shown) == 2 and len(shown[1].notes) == len(ns.notes)
  assert sorted(n.pitch for n in shown[0].notes) == sorted(
      n.pitch for n in inference.read_midi(src).notes)
  assert ns.tempos[0].qpm == pytest.approx(inference.read_midi(src).tempos[0].qpm, rel=1e-4)
  (wav,) = [line.split(" ")[1] for line in out.splitlines() if ".wav" in line]
  engine = "built-in synth" if render.fluidsynth_unavailable_reason() else "fluidsynth"
  assert out.count(f".wav ({engine})") == 1 and os.path.getsize(wav) > 44


def test_drumify_from_wav(workdirs, capsys, tmp_path):
  times = 0.125 * np.array([0, 4, 6, 8, 12, 16, 20, 22, 24, 28])
  wav = tmp_path / "taps.wav"
  wavfile.write(wav, 16000, audio_taps.click_track(times + 0.01, 16000).astype(np.float32))
  code, out, _ = run(capsys, "--workdir", workdirs["groove_2bar_tap_fixed_velocity"],
                     "--mode=drumify", f"--input_wav={wav}", "--qpm=120",
                     f"--output_dir={tmp_path}", "--no-png")
  assert code == 0 and "detected 10 taps" in out
  assert len(written(out, ".mid")) == 2  # the taps and the drums


def test_attribute_apply(workdirs, capsys, tmp_path):
  vec = attributes.AttributeVector("note_density", np.ones(4, np.float32), {"n": 1})
  path = vec.save(tmp_path / "density.npz")
  src = bars_of_beat(tmp_path / "in.mid", 2)
  code, out, _ = run(capsys, "--workdir", workdirs["groove_2bar_humanize"],
                     "--mode=attribute", f"--attribute_file={path}", f"--input_midi_1={src}",
                     "--strength", "-1", "0", "1", f"--output_dir={tmp_path}")
  assert code == 0 and len(written(out, ".mid")) == 3


@pytest.mark.parametrize("argv, message", [
    (["--mode=humanize"], "needs 1 input"),
    (["--mode=humanize", "--input_midi_1={junk}"], "not a MIDI file"),
    (["--mode=humanize", "--input_midi_1={empty}"], "empty"),
    (["--mode=drumify", "--input_midi_1={beat}"], "tap"),
    (["--mode=sample", "--temperature=-1"], "temperature"),
    (["--mode=sample", "--chords=C,G"], "not chord-conditioned"),
    (["--mode=attribute"], "--attribute=NAME"),
    (["--mode=interpolate", "--input_midi_1={beat}", "--input_midi_2={beat}",
      "--input_midi_3={beat}"], "not 3"),
])
def test_user_errors_exit_2(workdirs, capsys, tmp_path, argv, message):
  (tmp_path / "junk.mid").write_text("hello")
  (tmp_path / "empty.mid").write_bytes(b"")
  files = {"junk": tmp_path / "junk.mid", "empty": tmp_path / "empty.mid", "beat": BEAT}
  argv = [a.format(**files) for a in argv]
  code, _, err = run(capsys, "--workdir", workdirs["groove_2bar_humanize"],
                     f"--output_dir={tmp_path}", *argv)
  assert code == 2 and err.startswith("error: ") and message in err


def test_cli_fills_its_caches(workdirs, tmp_path):
  env = dict(os.environ, FLAX_MUSICVAE_CACHE=str(tmp_path / "cache"))
  cmd = [sys.executable, "-m", "flax_musicvae.generate", "--mode=sample", "--no-png",
         f"--workdir={workdirs['groove_2bar_humanize']}", f"--output_dir={tmp_path}"]
  first = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=True)
  for sub in ("jax", "export", "params"):
    assert list((tmp_path / "cache" / sub).iterdir()), sub
  second = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=True)
  notes = lambda out: [inference.read_midi(m).notes for m in written(out, ".mid")]  # noqa: E731
  assert notes(first.stdout) == notes(second.stdout)  # cached programs, same samples


def test_missing_workdir_has_no_traceback(tmp_path):
  res = subprocess.run([sys.executable, "-m", "flax_musicvae.generate",
                        f"--workdir={tmp_path / 'nope'}", "--mode=sample"], cwd=ROOT,
                       capture_output=True, text=True)
  assert res.returncode == 2
  assert "error: " in res.stderr and "config.json" in res.stderr
  assert "Traceback" not in res.stderr


def test_sample_from_a_magenta_checkpoint(workdirs, capsys, tmp_path):
  from flax_musicvae.checkpoints import magenta_import  # pylint: disable=import-outside-toplevel
  model = inference.MusicVAEModel.from_workdir(workdirs["groove_2bar_humanize"])
  prefix = magenta_import.export_tf_checkpoint(model.params, tmp_path / "tf" / "model.ckpt")
  common = ["--mode=sample", "--num_outputs=1", "--seed=9", "--no-png"]
  _, out_a, _ = run(capsys, "--workdir", workdirs["groove_2bar_humanize"], *common,
                    f"--output_dir={tmp_path / 'a'}")
  # The full-size config by name: the sizes come from the checkpoint's shapes; an
  # override renames the outputs.
  code, out_b, err = run(capsys, f"--checkpoint_file={prefix}", "--config=groove_2bar_humanize",
                         "--config.name=tiny_humanize", *common,
                         f"--output_dir={tmp_path / 'b'}")
  assert code == 0, err
  assert "sizes from the checkpoint: z_size 4, enc_rnn_size (8,), dec_rnn_size (8, 8)" in err
  (a,), (b,) = written(out_a, ".mid"), written(out_b, ".mid")
  assert "tiny_humanize_sample_" in b
  assert inference.read_midi(a).notes == inference.read_midi(b).notes
  code, _, err = run(capsys, f"--checkpoint_file={prefix}", "--config=cat_mel_2bar_small",
                     *common, f"--output_dir={tmp_path / 'c'}")
  assert code == 2 and err.startswith("error: ") and err.count("\n") == 1
  assert "does not fit config cat-mel_2bar_small: checkpoint sizes z_size 4, enc_rnn_size " \
      "(8,), dec_rnn_size (8, 8); config sizes z_size 256, enc_rnn_size (512,)" in err
  code, _, err = run(capsys, f"--checkpoint_file={prefix}", "--config=groove_2bar_humanize",
                     "--config.model.no_such_field=1", *common)
  assert code == 2 and "no_such_field" in err
  code, _, err = run(capsys, f"--checkpoint_file={prefix}", *common)
  assert code == 2 and "needs --config" in err


def test_console_scripts_resolve_to_callables():
  """Every [project.scripts] command names a module-level function that takes no
  required argument (pip's wrapper calls it bare). Read from the source, without
  importing every CLI's dependencies (TensorFlow, Flask, ...)."""
  import ast
  import importlib.util
  import tomllib
  scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
  assert {"flax-musicvae-train", "flax-musicvae-generate", "flax-musicvae-import",
          "flax-musicvae-export", "flax-musicvae-folk"} <= set(scripts)
  for command, target in scripts.items():
    module, _, attr = target.partition(":")
    tree = ast.parse(open(importlib.util.find_spec(module).origin).read())
    (fn,) = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == attr]
    assert len(fn.args.args) == len(fn.args.defaults), command
