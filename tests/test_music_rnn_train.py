"""MusicRNN configs build, and train through the shared loop on real melodies and drums."""

from __future__ import annotations

import collections
import pathlib

import jax
import numpy as np
import pytest

from conftest import SHARED
from flax_musicvae import config_lib
from flax_musicvae import input_pipeline
from flax_musicvae import train
from flax_musicvae.models import losses
from flax_musicvae.models import vae
from flax_musicvae.music_rnn import configs as rnn_configs

NAMES = ["basic_rnn", "mono_rnn", "lookback_rnn", "attention_rnn", "drum_kit_rnn",
         "basic_improv", "attention_improv", "chord_pitches_improv"]
GROOVE = SHARED / "data" / "groove-v1.0.0-midionly" / "groove"
CACHE = pathlib.Path("~/.cache/flax_musicvae/test_folk_abc").expanduser()


@pytest.mark.parametrize("name", NAMES)
def test_config_matches_magenta_and_runs(name):
  c = config_lib.load(name)
  mc = rnn_configs.magenta_config(name)
  assert c.name == name and c.model.architecture == "music_rnn"
  assert tuple(c.model.rnn_layer_sizes) == mc.rnn_layer_sizes
  assert (c.model.attn_length, c.model.dropout_keep_prob, c.train.grad_clip,
          c.train.batch_size, c.train.learning_rate, c.train.decay_rate) == (
              mc.attn_length, 0.5, mc.clip_norm, 128, 0.001, 1.0)
  conv = config_lib.make_converter(c.data)
  assert (c.model.input_depth, c.model.output_depth) == (conv.input_depth, conv.output_depth)
  t = config_lib.tiny(c)
  model = vae.build_model(t)
  rng = np.random.default_rng(0)
  steps = 12
  batch = {"inputs": rng.random((2, steps, conv.input_depth), np.float32),
           "outputs": np.eye(conv.output_depth, dtype=np.float32)[
               rng.integers(0, conv.output_depth, (2, steps))],
           "controls": np.zeros((2, steps, 0), np.float32),
           "lengths": np.array([steps, 7], np.int32)}
  rngs = {k: jax.random.PRNGKey(0) for k in ("params", "dropout", "sample")}
  variables = model.init(rngs, batch, train=False)
  out = model.apply(variables, batch, train=True, rngs=rngs)
  loss, metrics = losses.compute_loss(out, batch, 0, t.model)
  assert np.isfinite(float(loss)) and 0 <= float(metrics["accuracy"]) <= 1
  np.testing.assert_allclose(float(loss), np.log(conv.output_depth), rtol=0.2)


def folk_collection(tmp_path: pathlib.Path, files: int = 150) -> pathlib.Path:
  pytest.importorskip("music21")
  from flax_musicvae.pipelines import folk_melodies  # pylint: disable=import-outside-toplevel
  from flax_musicvae.pipelines import note_sequence_io  # pylint: disable=import-outside-toplevel
  CACHE.mkdir(parents=True, exist_ok=True)
  sequences = list(folk_melodies.iter_corpus(("ryansMammoth",), CACHE, collections.Counter(),
                                             limit_files=files, progress=False))
  path = tmp_path / "folk.tfrecord"
  note_sequence_io.write_note_sequences(path, sequences)
  return path


def majority_accuracy(arrays) -> float:
  mask = np.arange(arrays["outputs"].shape[1])[None] < arrays["lengths"][:, None]
  labels = np.argmax(arrays["outputs"], -1)[mask]
  return float(np.bincount(labels).max() / len(labels))


def _train(c, tmp_path):
  c.data.cache_dir = str(tmp_path / "cache")
  train_data = input_pipeline.load_split(c, "train")
  eval_data = input_pipeline.load_split(c, "validation")
  result = train.train_and_evaluate(c, tmp_path / "run", train_data=train_data,
                                    eval_data=eval_data)
  metrics = [l for l in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
  return result, metrics, eval_data


@pytest.mark.slow
def test_lookback_rnn_trains_on_folk_melodies(tmp_path):
  """Loss falls and eval accuracy beats the majority class on real folk tunes."""
  c = config_lib.tiny("lookback_rnn", 120, rnn=32, log_every_steps=60, eval_num_batches=0)
  c.data.update(path=str(folk_collection(tmp_path)), eval_fraction=0.2)
  result, metrics, eval_data = _train(c, tmp_path)
  import json  # pylint: disable=import-outside-toplevel
  train_losses = [json.loads(l)["loss"] for l in metrics if '"split": "train"' in l]
  first = float(np.log(c.model.output_depth))
  assert train_losses[-1] < 0.75 * first
  assert result["eval"]["accuracy"] > majority_accuracy(eval_data)
  # A MusicRNN has no sampled decoder inputs: one (teacher-forced) evaluation pass.
  assert {k.split("/")[0] for k in result["eval"] if "/" in k} == {"teacher_forced"}


@pytest.mark.slow
def test_drum_kit_rnn_trains_on_groove(tmp_path):
  if not GROOVE.exists():
    pytest.skip("Groove MIDI Dataset not found")
  import note_seq  # pylint: disable=import-outside-toplevel
  from flax_musicvae.pipelines import note_sequence_io  # pylint: disable=import-outside-toplevel
  files = sorted(GROOVE.glob("drummer1/session1/*beat*.mid"))[:40]
  sequences = []
  for f in files:
    ns = note_seq.midi_file_to_note_sequence(str(f))
    ns.id = str(f.relative_to(GROOVE))
    sequences.append(ns)
  path = tmp_path / "groove.tfrecord"
  note_sequence_io.write_note_sequences(path, sequences)
  c = config_lib.tiny("drum_kit_rnn", 60, rnn=32, batch_size=4, log_every_steps=30,
                      eval_num_batches=0)
  c.model.rnn_layer_sizes = (32, 32)   # 2 of Magenta's 3 layers: 60 steps fit the loss bounds
  c.data.update(path=str(path), eval_fraction=0.3)
  result, metrics, eval_data = _train(c, tmp_path)
  import json  # pylint: disable=import-outside-toplevel
  train_losses = [json.loads(l)["loss"] for l in metrics if '"split": "train"' in l]
  uniform = float(np.log(c.model.output_depth))   # 6.24 nats: the untrained loss
  assert train_losses[-1] < 0.7 * uniform
  assert result["eval"]["loss"] < 0.75 * uniform
