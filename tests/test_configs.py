"""All 23 CONFIG_MAP configs load, build at tiny width and run a forward pass + loss."""

import jax
import numpy as np
import pytest

from conftest import ROOT
from flax_musicvae import config_lib
from flax_musicvae import schedules
from flax_musicvae.models import losses
from flax_musicvae.models import vae

MAGENTA_NAMES = [
    "cat-mel_2bar_small", "cat-mel_2bar_big", "cat-mel_2bar_med_chords",
    "cat-drums_2bar_small", "cat-drums_2bar_big", "nade-drums_2bar_reduced",
    "nade-drums_2bar_full", "flat-trio_16bar", "hierdec-trio_16bar", "hier-trio_16bar",
    "flat-mel_16bar", "hierdec-mel_16bar", "hier-mel_16bar", "hier-multiperf_vel_1bar_med",
    "hier-multiperf_vel_1bar_big", "hier-multiperf_vel_1bar_med_chords",
    "hier-multiperf_vel_1bar_big_chords", "groovae_4bar", "groovae_2bar_humanize",
    "groovae_2bar_tap_fixed_velocity", "groovae_2bar_tap_fixed_velocity_note_dropout",
    "groovae_2bar_add_closed_hh", "groovae_2bar_hits_control_tfds",
]


def file_name(magenta_name: str) -> str:
  return magenta_name.replace("groovae", "groove").replace("-", "_")


# Magenta's MusicRNN configs (tests/test_music_rnn_train.py builds and trains them).
MUSIC_RNN_NAMES = ["basic_rnn", "mono_rnn", "lookback_rnn", "attention_rnn", "drum_kit_rnn",
                   "basic_improv", "attention_improv", "chord_pitches_improv"]


def test_one_file_per_magenta_config():
  files = sorted(p.stem for p in (ROOT / "configs").glob("*.py") if p.stem != "__init__")
  assert files == sorted([file_name(n) for n in MAGENTA_NAMES] + MUSIC_RNN_NAMES)


@pytest.mark.parametrize("name", MAGENTA_NAMES)
def test_config_builds_and_runs(name):
  c = config_lib.load(file_name(name))
  assert c.name == name
  m = c.model
  assert m.input_depth > 0 and m.output_depth > 0
  conv = config_lib.make_converter(c.data)  # depths agree with the converter
  assert (m.input_depth, m.output_depth, m.control_depth) == (
      conv.input_depth, conv.output_depth, conv.control_depth)
  if name.startswith("groovae"):
    assert (c.data.dataset, c.data.path, c.train.batch_size) == (
        "groove", "../shared/data/groove-v1.0.0-midionly", 512)
  tiny = config_lib.tiny(c, rnn=4, z=3)
  model = vae.build_model(tiny)
  spec = model.spec
  rng = np.random.default_rng(0)
  batch = {"inputs": rng.random((2, spec.max_seq_len, spec.input_depth), np.float32),
           "outputs": np.eye(spec.output_depth, dtype=np.float32)[
               rng.integers(0, spec.output_depth, (2, spec.max_seq_len))],
           "controls": rng.random((2, spec.max_seq_len, spec.control_depth), np.float32),
           "lengths": np.full((2,), spec.max_seq_len, np.int32)}
  rngs = {k: jax.random.PRNGKey(0) for k in ("params", "dropout", "sample")}

  @jax.jit
  def run(batch):
    variables = model.init(rngs, batch, train=False)
    p = schedules.sampling_probability(1, tiny.model, True)
    out = model.apply(variables, batch, train=True, sampling_probability=p, rngs=rngs)
    return losses.compute_loss(out, batch, 1, tiny.model)

  loss, metrics = run(batch)
  assert np.isfinite(float(loss))
  assert {"r_loss", "kl_loss", "kl_bits", "beta", "accuracy"} <= set(metrics)


def test_tiny_shrinks_a_copy_and_sets_up_a_short_run():
  full = config_lib.load("drum_kit_rnn")
  c = config_lib.tiny(full, 5, rnn=4, log_every_steps=2)
  assert (c.model.rnn_layer_sizes, c.model.attn_length) == ((4, 4, 4), 8)
  assert (full.model.rnn_layer_sizes, full.model.attn_length) == ((256, 256, 256), 32)
  t = c.train
  assert (t.batch_size, t.num_train_steps, t.log_every_steps, t.eval_num_batches,
          t.eval_samples) == (8, 5, 2, 1, 0)
  assert min(t.eval_every_steps, t.checkpoint_every_steps) > 1000 * t.num_train_steps
  named = config_lib.tiny("groove_4bar", rnn=16, z=8)   # by name; train settings untouched
  assert (named.model.enc_rnn_size, named.model.dec_rnn_size, named.model.z_size) == (
      (16,), (16, 16), 8)
  assert named.train == config_lib.load("groove_4bar").train
