"""NoteSequence TFRecord -> cached arrays: id-hash split, conversion, cache keying, training."""

import hashlib
import math
import os

import note_seq
import numpy as np
import pytest

from flax_musicvae import config_lib
from flax_musicvae import input_pipeline
from flax_musicvae import train
from flax_musicvae.data.melody import OneHotMelodyConverter
from flax_musicvae.pipelines import note_sequence_dataset as nsd
from flax_musicvae.pipelines import note_sequence_io
from tests.conftest import FIXTURES

TRANSPOSES = range(4)
SEED = 3


def mel_config():
  return config_lib.load("cat_mel_2bar_small")


CONVERTER = config_lib.make_converter(mel_config().data)


def fixture_sequences():
  """Each melody fixture at a few transpositions, each with its own id (16 sequences)."""
  out = []
  for midi in sorted((FIXTURES / "melodies").glob("*.mid")):
    base = note_seq.midi_file_to_note_sequence(str(midi))
    for shift in TRANSPOSES:
      ns = note_seq.NoteSequence()
      ns.CopyFrom(base)
      for note in ns.notes:
        note.pitch += shift
      ns.id = f"/id/test/{midi.stem}/{shift}"
      out.append(ns)
  return out


@pytest.fixture()
def collection(tmp_path):
  path = tmp_path / "melodies.tfrecord"
  note_sequence_io.write_note_sequences(path, fixture_sequences())
  return path


def load(path, cache_dir, split="train", mode="train", **kwargs):
  return nsd.load_note_sequence_split(path, split, CONVERTER, cache_dir, mode=mode, seed=SEED,
                                      eval_fraction=0.5, max_seq_len=32, **kwargs)


def test_split_is_deterministic_disjoint_and_complete(collection):
  ids = {s: [ns.id for ns in nsd.split_sequences(collection, s, 0.5)] for s in nsd.SPLITS}
  again = {s: [ns.id for ns in nsd.split_sequences(collection, s, 0.5)] for s in nsd.SPLITS}
  assert ids == again
  assert ids["train"] and ids["validation"]
  assert not set(ids["train"]) & set(ids["validation"])
  assert sorted(ids["train"] + ids["validation"]) == sorted(ns.id for ns in fixture_sequences())
  for i in ids["validation"]:  # the hash is SHA-256 of the id, not Python's salted hash()
    assert int.from_bytes(hashlib.sha256(i.encode()).digest()[:8], "big") < 0.5 * 2**64


def test_arrays_equal_converting_each_sequence_by_hand(collection, tmp_path):
  arrays = load(collection, tmp_path / "cache")
  inputs, outputs, lengths = [], [], []
  for ns in nsd.split_sequences(collection, "train", 0.5):
    seed = int.from_bytes(hashlib.sha256(ns.id.encode()).digest()[:8], "big")
    t = CONVERTER.to_tensors(ns, "train", np.random.default_rng([SEED, seed]))
    inputs += t.inputs
    outputs += t.outputs
    lengths += t.lengths
  assert arrays["inputs"].shape == (len(lengths), 32, CONVERTER.input_depth)
  assert arrays["controls"].shape == (len(lengths), 32, 0)
  np.testing.assert_array_equal(arrays["lengths"], lengths)
  for i, n in enumerate(lengths):
    np.testing.assert_array_equal(arrays["inputs"][i, :n], inputs[i])
    np.testing.assert_array_equal(arrays["outputs"][i, :n], outputs[i])
    assert not arrays["outputs"][i, n:].any()


def test_second_call_reads_the_cache_and_new_content_makes_a_new_one(collection, tmp_path,
                                                                      monkeypatch):
  cache_dir = tmp_path / "cache"
  first = load(collection, cache_dir, split="validation", mode="eval")

  def fail(*args, **kwargs):
    raise AssertionError("converter called on a cache hit")

  monkeypatch.setattr(OneHotMelodyConverter, "to_tensors", fail)
  cached = load(collection, cache_dir, split="validation", mode="eval")
  for k in nsd.FIELDS:
    np.testing.assert_array_equal(cached[k], first[k])

  # Same size and mtime, other bytes (records reversed): must not hit the old cache.
  stat = collection.stat()
  note_sequence_io.write_note_sequences(collection, fixture_sequences()[::-1])
  os.utime(collection, ns=(stat.st_atime_ns, stat.st_mtime_ns))
  assert collection.stat().st_size == stat.st_size
  with pytest.raises(AssertionError, match="cache hit"):
    load(collection, cache_dir, split="validation", mode="eval")
  monkeypatch.undo()
  reversed_ = load(collection, cache_dir, split="validation", mode="eval")
  assert len(list(cache_dir.glob("*.npz"))) == 2
  np.testing.assert_array_equal(np.sort(reversed_["lengths"]), np.sort(first["lengths"]))


def test_bad_input_is_a_clear_error(collection, tmp_path):
  with pytest.raises(ValueError, match="fewer than the 1000 needed"):
    load(collection, tmp_path / "cache", min_examples=1000)
  with pytest.raises(ValueError, match="split must be one of"):
    load(collection, tmp_path / "cache", split="test")
  with pytest.raises(ValueError, match="more than max_seq_len=16"):
    nsd.load_note_sequence_split(collection, "train", CONVERTER, tmp_path / "cache", mode="eval",
                                 eval_fraction=0.5, max_seq_len=16)
  no_id = tmp_path / "no_id.tfrecord"
  note_sequence_io.write_note_sequences(no_id, [note_seq.NoteSequence()])
  with pytest.raises(ValueError, match="record 0 has no NoteSequence id"):
    load(no_id, tmp_path / "cache")


def tiny_mel_config(collection, cache_dir, dataset="note_sequences"):
  c = config_lib.tiny(mel_config(), 3, rnn=16, z=8, batch_size=4)
  c.data.update(dataset=dataset, path=str(collection), cache_dir=str(cache_dir),
                eval_fraction=0.5)
  return c


def test_load_split_checks_model_depths(collection, tmp_path):
  c = tiny_mel_config(collection, tmp_path / "cache", dataset="folk")
  arrays = input_pipeline.load_split(c, "validation")
  assert arrays["outputs"].shape[1:] == (c.model.max_seq_len, c.model.output_depth)
  c.model.input_depth += 1
  with pytest.raises(ValueError, match="model.input_depth"):
    input_pipeline.load_split(c, "validation")


def test_cat_mel_2bar_small_trains_on_a_note_sequence_collection(collection, tmp_path):
  c = tiny_mel_config(collection, tmp_path / "cache")
  result = train.train_and_evaluate(c, tmp_path / "workdir")
  assert result["eval"] and all(math.isfinite(v) for v in result["eval"].values())
  assert all(math.isfinite(v) for v in result["train"].values())
