"""--mode=continue from the CLI and Python; .mag bundles built the way Magenta builds them."""

from __future__ import annotations

import numpy as np
import pytest

from flax_musicvae import config_lib
from flax_musicvae import generate
from flax_musicvae.music_rnn import bundle as bundle_lib
from flax_musicvae.music_rnn import cli as rnn_cli
from test_music_rnn import CONFIGS, GOLDEN_RNN, golden, golden_primer, item_events


def mag(config: str) -> str:
  golden(config)
  return str(GOLDEN_RNN / config / f"{config}.mag")


@pytest.mark.parametrize("config", list(CONFIGS))
def test_magenta_bundle_reads_without_tensorflow(config):
  b = bundle_lib.read_bundle(mag(config))
  weights = np.load(GOLDEN_RNN / config / "weights.npz")
  assert sorted(b.tensors) == sorted(weights.files)
  for k in weights.files:
    np.testing.assert_array_equal(b.tensors[k], weights[k])
  assert b.generator_id == ("drum_kit" if config == "drum_kit_rnn" else config)


@pytest.mark.parametrize("config", ["attention_rnn", "drum_kit_rnn"])
def test_bundle_built_like_magenta_continues_like_the_golden(config, tmp_path):
  """write_bundle (GeneratorBundle + V1 checkpoint from the golden weights) -> load ->
  the golden greedy continuation."""
  g, meta = golden(config)
  weights = dict(np.load(GOLDEN_RNN / config / "weights.npz"))
  path = tmp_path / f"{config}.mag"
  bundle_lib.write_bundle(path, "drum_kit" if config == "drum_kit_rnn" else config, weights,
                          bundle_description="test")
  gen = rnn_cli.generator_from_bundle(path)
  item = meta["greedy"]["items"][0]
  events = item_events(config, item)
  result = gen.generate_events(events[:33], len(events), temperature=1e-6, seed=2024)
  assert result.events == events
  np.testing.assert_array_equal(result.chosen, g["greedy0_chosen"])


def test_v1_checkpoint_is_readable_by_tensorflow(tmp_path):
  tf = pytest.importorskip("tensorflow")
  weights = dict(np.load(GOLDEN_RNN / "attention_rnn" / "weights.npz"))
  path = tmp_path / "model.ckpt"
  path.write_bytes(bundle_lib.write_v1_checkpoint(weights))
  reader = tf.compat.v1.train.NewCheckpointReader(str(path))
  for k, v in weights.items():
    np.testing.assert_array_equal(reader.get_tensor(k), v)


def test_not_a_bundle(tmp_path):
  bad = tmp_path / "x.mag"
  bad.write_bytes(b"\x0a\x03abc")
  with pytest.raises(bundle_lib.BundleError):
    bundle_lib.read_bundle(bad)
  with pytest.raises(bundle_lib.BundleError):
    bundle_lib.read_v1_checkpoint(b"not a table at all" * 4)


def _run(tmp_path, *args):
  out = tmp_path / "out"
  code = generate.main(["--mode=continue", f"--output_dir={out}", "--num_outputs=1",
                        "--no-png", *args])
  return code, sorted(p.name for p in out.glob("*.mid")) if out.exists() else []


def test_cli_continue_from_bundles(tmp_path):
  code, files = _run(tmp_path, f"--bundle_file={mag('lookback_rnn')}", '--primer_melody=[60]',
                     "--num_steps=48", "--beam_size=2", "--branch_factor=2",
                     "--steps_per_iteration=4")
  assert code == 0 and len(files) == 1
  code, _ = _run(tmp_path, f"--bundle_file={mag('drum_kit_rnn')}",
                 "--primer_drums=[(36, 42), (), (42,)]", "--num_steps=32")
  assert code == 0
  code, _ = _run(tmp_path, f"--bundle_file={mag('chord_pitches_improv')}",
                 "--primer_melody=[60, -2, 62]", "--backing_chords=C G Am F", "--num_steps=40")
  assert code == 0


@pytest.mark.parametrize("args", [
    ["--primer_melody=[60, x]"],
    ["--primer_drums=[(36,)]"],
    ["--primer_melody=[60]", "--num_steps=1"],
    ["--primer_melody=[60]", "--beam_size=0"],
])
def test_cli_continue_errors_exit_2(tmp_path, args):
  with pytest.raises(SystemExit) as e:
    _run(tmp_path, f"--bundle_file={mag('basic_rnn')}", *args)
  assert e.value.code == 2


def test_cli_errors_for_improv_without_chords_and_bundle_in_vae_mode(tmp_path):
  with pytest.raises(SystemExit) as e:
    _run(tmp_path, f"--bundle_file={mag('chord_pitches_improv')}", "--primer_melody=[60]")
  assert e.value.code == 2
  with pytest.raises(SystemExit) as e:
    generate.main(["--mode=sample", f"--bundle_file={mag('basic_rnn')}"])
  assert e.value.code == 2


def test_bundle_to_workdir_then_continue_from_workdir(tmp_path):
  """A .mag imported as a run continues exactly like the bundle (Python API and CLI)."""
  g, meta = golden("basic_rnn")
  workdir = tmp_path / "run"
  rnn_cli.bundle_to_workdir(mag("basic_rnn"), workdir)
  gen = rnn_cli.load_generator(workdir=str(workdir))
  item = meta["greedy"]["items"][1]
  start, end = item["generate_section"]
  _, result = gen.continue_sequence(golden_primer(g, 1, item["qpm"]), start_time=start,
                                    end_time=end, temperature=1e-6)
  assert result.events == item["events"]
  code, files = _run(tmp_path, f"--workdir={workdir}", "--primer_melody=[60, -2, 64]",
                     "--num_steps=32", "--temperature=0")
  assert code == 0 and len(files) == 1


def test_magenta_training_checkpoint_with_config():
  """A TF (V2) training checkpoint of attention_rnn + configs/attention_rnn.py."""
  g, meta = golden("attention_rnn")
  gen = rnn_cli.load_generator(checkpoint_file=str(GOLDEN_RNN / "attention_rnn" / "model.ckpt"),
                               config=config_lib.load("attention_rnn"))
  assert gen.spec.rnn_layer_sizes == (32, 32) and gen.spec.attn_length == 40
  item = meta["greedy"]["items"][1]
  result = gen.generate_events(item["events"][:33], 96, temperature=1e-6)
  np.testing.assert_array_equal(result.chosen, g["greedy1_chosen"])


def test_cli_continue_applies_config_overrides(tmp_path, capsys):
  """--config.<field> overrides reach a continue-mode --config (a wrong field is named)."""
  golden("attention_rnn")  # skips without the goldens
  checkpoint = f"--checkpoint_file={GOLDEN_RNN / 'attention_rnn' / 'model.ckpt'}"
  with pytest.raises(SystemExit) as e:
    _run(tmp_path, checkpoint, "--config=attention_rnn", "--config.model.no_such_field=1",
         "--primer_melody=[60]")
  assert e.value.code == 2 and "no_such_field" in capsys.readouterr().err
  code, files = _run(tmp_path, checkpoint, "--config=attention_rnn",
                     "--config.model.attn_length=40", "--primer_melody=[60]", "--num_steps=24")
  assert code == 0 and len(files) == 1
