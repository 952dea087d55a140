"""lite_runner: notes as the converters' from_tensors, valid MIDI, runs on numpy + LiteRT only."""

import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from note_seq import midi_io

from conftest import ROOT
from flax_musicvae import config_lib
from flax_musicvae import lite_runner
from flax_musicvae.export import bundle
from flax_musicvae.export import metadata
from flax_musicvae.export import signatures
from flax_musicvae.models import build_model

RUNNER = ROOT / "flax_musicvae" / "lite_runner.py"
FORBIDDEN = ("jax", "tensorflow", "flax", "note_seq", "flax_musicvae")


def meta_for(config) -> dict:
  conv = config_lib.make_converter(config.data)
  return {"tracks": metadata.tracks(config.data), "qpm": metadata.QPM,
          "steps_per_quarter": conv.steps_per_quarter}


def note_tuples(notes, drum_channel: int = lite_runner.DRUM_CHANNEL) -> list[tuple]:
  """(pitch, velocity, start, end, is_drum, program) sorted, times rounded to 1 ms."""
  out = []
  for n in notes:
    is_drum = n.is_drum if hasattr(n, "is_drum") else n.channel == drum_channel
    out.append((n.pitch, n.velocity, round(n.start_time if hasattr(n, "start_time")
                                              else n.start, 3),
                round(n.end_time if hasattr(n, "end_time") else n.end, 3), bool(is_drum),
                0 if is_drum else n.program))
  return sorted(out)


def random_outputs(config, rng: np.random.Generator, steps: int) -> np.ndarray:
  """Plausible decoder outputs: one-hot per part, or groove hits/velocities/offsets."""
  depth = config.model.output_depth
  if config.data.converter == "groove":
    d = depth // 3
    hits = (rng.random((steps, d)) < 0.3).astype(np.float32)
    offsets = rng.uniform(-1, 1, (steps, d)).astype(np.float32)
    offsets[0] = np.minimum(offsets[0], 0)  # no hit before time 0 (the runner clips there)
    return np.concatenate([hits, rng.random((steps, d)), offsets], -1).astype(np.float32)
  parts = config.model.output_depths or (depth,)
  return np.concatenate([np.eye(p, dtype=np.float32)[rng.integers(0, p, steps)]
                         for p in parts], -1)


@pytest.mark.parametrize("name", ["cat_mel_2bar_small", "cat_drums_2bar_small",
                                  "groove_4bar", "flat_trio_16bar"])
def test_notes_match_the_converter(name):
  config = config_lib.tiny(name)
  conv = config_lib.make_converter(config.data)
  rng = np.random.default_rng(0)
  for _ in range(3):
    out = random_outputs(config, rng, config.model.max_seq_len)
    expected = conv.from_tensors([out])[0].notes
    got = lite_runner.to_notes(out, meta_for(config))
    assert len(got) > 0
    assert note_tuples(got) == note_tuples(expected)


def test_midi_bytes_parse_back(tmp_path):
  notes = [lite_runner.Note(60, 80, 0.0, 0.5, 0, 0),
           lite_runner.Note(36, 100, 0.12, 0.245, 9),
           lite_runner.Note(40, 70, 1.0, 1.125, 1, 33),
           lite_runner.Note(60, 90, 0.5, 0.75, 0, 0)]   # same pitch right after its end
  path = tmp_path / "x.mid"
  path.write_bytes(lite_runner.midi_bytes(notes, 120.0))
  ns = midi_io.midi_file_to_note_sequence(str(path))
  assert ns.tempos[0].qpm == pytest.approx(120.0)
  got = sorted((n.pitch, n.velocity, n.start_time, n.end_time, n.is_drum, n.program)
               for n in ns.notes)
  want = sorted((n.pitch, n.velocity, n.start, n.end, n.channel == 9, n.program)
                for n in notes)
  assert len(got) == len(want)
  for g, w in zip(got, want):
    assert g[:2] == w[:2] and g[4:] == w[4:]
    np.testing.assert_allclose(g[2:4], w[2:4], atol=1e-3)


def test_bad_inputs_raise():
  meta = {"config_name": "x", "noise": {"kind": "gumbel"}, "signatures": {"sample": {
      "inputs": {"z_noise": {"shape": [1, 4]}, "noise": {"shape": [1, 2, 3]},
                 "temperature": {"shape": []}, "controls": {"shape": [1, 2, 5]}}}}}
  rng = np.random.default_rng(0)
  with pytest.raises(ValueError, match="temperature"):
    lite_runner.make_inputs(meta, rng, 0.0)
  with pytest.raises(ValueError, match="needs controls"):
    lite_runner.make_inputs(meta, rng, 1.0)


def isolated_site(tmp_path: pathlib.Path) -> pathlib.Path:
  """A folder with only numpy and ai_edge_litert (symlinked from this environment)."""
  site = tmp_path / "site"
  site.mkdir()
  import ai_edge_litert
  packages = [pathlib.Path(np.__file__).parent, pathlib.Path(ai_edge_litert.__file__).parent]
  libs = packages[0].parent / "numpy.libs"
  for p in packages + ([libs] if libs.exists() else []):
    (site / p.name).symlink_to(p)
  return site


BOOTSTRAP = """
import json, sys
sys.path[:0] = [{site!r}, {runner_dir!r}]
import lite_runner
code = lite_runner.main({argv!r})
mods = sorted(m for m in sys.modules if m.split('.')[0] in {forbidden!r})
print(json.dumps({{"code": code, "forbidden": mods, "path": sys.path}}))
"""


@pytest.mark.tf
def test_runner_in_isolated_process_writes_the_model_sample(tmp_path):
  pytest.importorskip("tensorflow")
  pytest.importorskip("ai_edge_litert")
  config = config_lib.tiny("groove_2bar_humanize")
  model = build_model(config)
  params = bundle.init_params(model, seed=2)
  meta = bundle.export_bundle(config, params, tmp_path / "export", 2, ("fp32",))
  runner_dir = tmp_path / "runner"
  runner_dir.mkdir()
  (runner_dir / "lite_runner.py").write_text(RUNNER.read_text())
  out = tmp_path / "sample.mid"
  argv = [f"--model={tmp_path / 'export' / 'model_fp32.tflite'}", f"--output={out}",
          "--seed=3", "--temperature=0.9"]
  code = BOOTSTRAP.format(site=str(isolated_site(tmp_path)), runner_dir=str(runner_dir),
                          argv=argv, forbidden=FORBIDDEN)
  proc = subprocess.run([sys.executable, "-S", "-E", "-P", "-c", code], cwd=tmp_path,
                        capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr
  report = json.loads(proc.stdout.strip().splitlines()[-1])
  assert report["code"] == 0
  assert report["forbidden"] == []
  assert not any("site-packages" in p for p in report["path"])
  # The MIDI files hold exactly the JAX sample for the same numpy-drawn noise.
  inputs = lite_runner.make_inputs(meta, np.random.default_rng(3), 0.9)
  ref = signatures.sample(model, params, inputs["z_noise"], inputs["noise"],
                          inputs["temperature"])
  conv = config_lib.make_converter(config.data)
  for i, path in enumerate(lite_runner.output_paths(out, 2)):
    ns = midi_io.midi_file_to_note_sequence(str(path))
    expected = conv.from_tensors([np.asarray(ref["outputs"][i])])[0]
    assert len(expected.notes) > 0
    got = sorted((n.pitch, n.velocity, n.start_time) for n in ns.notes)
    want = sorted((n.pitch, n.velocity, max(n.start_time, 0.0)) for n in expected.notes)
    assert [g[:2] for g in got] == [w[:2] for w in want]
    np.testing.assert_allclose([g[2] for g in got], [w[2] for w in want], atol=1e-3)
