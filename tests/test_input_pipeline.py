"""Input pipeline: epoch coverage, determinism per (seed, step), host sharding, prefetch."""

import itertools

import numpy as np
import pytest

from flax_musicvae import input_pipeline


def _arrays(n, t=4):
  ids = np.arange(n, dtype=np.float32)
  return {
      "inputs": np.broadcast_to(ids[:, None, None], (n, t, 3)).copy(),
      "outputs": np.broadcast_to(-ids[:, None, None], (n, t, 2)).copy(),
      "controls": np.zeros((n, t, 0), np.float32),
      "lengths": np.arange(n, dtype=np.int32) % t + 1,
  }


def _ids(batch):
  return batch["inputs"][:, 0, 0].astype(int).tolist()


def test_every_example_exactly_once_per_epoch():
  n, b = 10, 4
  batches = itertools.islice(input_pipeline.train_batches(_arrays(n), b, seed=3), 10)
  stream = [i for batch in batches for i in _ids(batch)]  # 40 positions = 4 epochs
  epochs = [stream[e * n:(e + 1) * n] for e in range(4)]
  for epoch in epochs:
    assert sorted(epoch) == list(range(n))
  assert len({tuple(e) for e in epochs}) == 4  # reshuffled every epoch
  assert epochs[0] != list(range(n))


def test_fields_stay_aligned():
  batch = next(input_pipeline.train_batches(_arrays(10), 4, seed=0))
  ids = np.array(_ids(batch))
  np.testing.assert_array_equal(batch["outputs"][:, 0, 0], -ids)
  np.testing.assert_array_equal(batch["lengths"], ids % 4 + 1)
  assert batch["controls"].shape == (4, 4, 0)


def test_deterministic_given_seed_and_step():
  arrays = _arrays(10)
  straight = list(itertools.islice(input_pipeline.train_batches(arrays, 4, seed=7), 8))
  resumed = list(itertools.islice(
      input_pipeline.train_batches(arrays, 4, seed=7, start_step=5), 3))
  assert [_ids(x) for x in straight[5:]] == [_ids(x) for x in resumed]
  other_seed = next(input_pipeline.train_batches(arrays, 4, seed=8))
  assert _ids(other_seed) != _ids(straight[0])


def test_hosts_split_each_global_batch():
  arrays = _arrays(12)
  global_batch = next(input_pipeline.train_batches(arrays, 6, seed=1))
  parts = [next(input_pipeline.train_batches(arrays, 6, seed=1, process_index=p,
                                             process_count=3)) for p in range(3)]
  assert sum((_ids(p) for p in parts), []) == _ids(global_batch)
  with pytest.raises(ValueError, match="not divisible"):
    input_pipeline.train_batches(arrays, 6, seed=1, process_count=4)


def test_too_little_data_fails_immediately():
  with pytest.raises(ValueError, match="3 examples, fewer than one batch of 4"):
    input_pipeline.train_batches(_arrays(3), 4, seed=0)  # no next() needed
  with pytest.raises(ValueError, match="evaluation split"):
    input_pipeline.eval_batches(_arrays(3), 4)


def test_eval_batches_in_order_without_partial_tail():
  batches = list(input_pipeline.eval_batches(_arrays(10), 4))
  assert [_ids(b) for b in batches] == [[0, 1, 2, 3], [4, 5, 6, 7]]
  assert len(list(input_pipeline.eval_batches(_arrays(10), 4, num_batches=1))) == 1


def test_prefetcher_yields_in_order_and_reraises():
  with input_pipeline.Prefetcher(iter(range(5)), transform=lambda x: x * 10) as it:
    assert list(it) == [0, 10, 20, 30, 40]

  def broken():
    yield 1
    raise RuntimeError("bad example")

  with input_pipeline.Prefetcher(broken()) as it:
    assert next(it) == 1
    with pytest.raises(RuntimeError, match="bad example"):
      next(it)


def test_prefetcher_close_stops_endless_producer():
  it = input_pipeline.Prefetcher(itertools.count(), buffer_size=2)
  assert next(it) == 0
  it.close()
  assert not it._thread.is_alive()


def test_relative_paths_resolve_against_the_current_directory(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  assert input_pipeline.resolve_path("data/x") == tmp_path / "data" / "x"
  assert input_pipeline.resolve_path("/abs/y").as_posix() == "/abs/y"
