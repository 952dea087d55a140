"""Training and evaluation batches from cached example arrays.

A split is a dict of numpy arrays ``{inputs [N,T,Din], outputs [N,T,Dout],
controls [N,T,Dc], lengths [N]}`` (built once from MIDI and cached by ``pipelines``).

Training order is a deterministic function of ``(seed, step)``: the examples form an
endless stream of per-epoch permutations (epoch ``e`` is shuffled with ``(seed, e)``),
and global batch ``s`` is stream positions ``[s*B, (s+1)*B)``. Every example is seen
exactly once per epoch (batches may straddle an epoch boundary, nothing is dropped),
and resuming at step ``s`` continues the identical sequence. With several hosts, host
``p`` of ``P`` takes rows ``[p*B/P, (p+1)*B/P)`` of every global batch.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import os
import pathlib
import queue
import shutil
import threading
from typing import Any, Callable, Iterator

from etils import epath
import jax
import ml_collections
import note_seq
import numpy as np

from flax_musicvae import config_lib
from flax_musicvae import data_fetch
from flax_musicvae.data import augment
from flax_musicvae.data.arrays import cache_key, pad_tensors
from flax_musicvae.data.converter import Mode
from flax_musicvae.pipelines import groove
from flax_musicvae.pipelines import note_sequence_dataset
from flax_musicvae.pipelines import tfds_groove

Batch = dict[str, np.ndarray]
FIELDS = ("inputs", "outputs", "controls", "lengths")
NOTE_SEQUENCE_DATASETS = ("note_sequences", "folk")
_AUGMENT_STREAM = 1  # keeps augmentation draws apart from the (seed, epoch) shuffles
TFDS_CACHE_VERSION = "v1"  # of load_tfds_split's cached arrays


def resolve_path(path: str) -> pathlib.Path:
  """``~`` expanded; relative paths are taken from the current directory."""
  if "://" in path:
    raise ValueError(f"{path}: data.cache_dir must be a local folder (only data.path may "
                     "be remote)")
  return pathlib.Path(path).expanduser().absolute()


def data_path(path: str) -> pathlib.Path:
  """``data.path`` as a local path: a remote one (``gs://bucket/groove.zip``, any
  ``etils.epath`` URL) is first copied into the local data cache (:func:`local_copy`)."""
  return local_copy(path) if "://" in path else resolve_path(path)


def _files(folder) -> Iterator[Any]:
  """Every file under ``folder`` (an epath; no ``**`` glob, which gs:// refuses)."""
  for child in folder.iterdir():
    if child.is_dir():
      yield from _files(child)
    else:
      yield child


def local_copy(url: str, cache: pathlib.Path | None = None) -> pathlib.Path:
  """A local copy of the remote file or folder ``url`` under ``<cache>/remote/``.

  ``cache``: ``data_fetch.cache_dir()`` by default. Copied once per host (to a
  temporary name, then renamed, so an interrupted copy is redone); a file whose remote
  size changed is copied again. ``FileNotFoundError`` when ``url`` does not exist.
  """
  source = epath.Path(url)
  if not source.exists():
    raise FileNotFoundError(f"data.path {url} not found")
  folder = (cache or data_fetch.cache_dir()) / "remote" / hashlib.sha256(
      url.encode()).hexdigest()[:16]
  target = folder / source.name
  is_dir = source.is_dir()
  if target.exists() and (is_dir or target.stat().st_size == source.stat().length):
    return target
  if jax.process_index() == 0:
    print(f"copying {url} to {target}", flush=True)
  tmp = folder / f".{source.name}.{os.getpid()}.tmp"
  shutil.rmtree(tmp, ignore_errors=True)
  files = list(_files(source)) if is_dir else [source]
  for file in files:
    dest = tmp / file.relative_to(source) if is_dir else tmp
    dest.parent.mkdir(parents=True, exist_ok=True)
    with file.open("rb") as src, open(dest, "wb") as out:
      shutil.copyfileobj(src, out, 1 << 20)
  if target.exists():
    shutil.rmtree(target) if target.is_dir() else target.unlink()
  tmp.rename(target)
  return target


def build_converter(data_cfg: ml_collections.ConfigDict):
  """The converter named by ``data.converter``, built with ``data.converter_kwargs``."""
  return config_lib.make_converter(data_cfg)


def build_augment(data_cfg: ml_collections.ConfigDict) -> augment.Transposer | None:
  """The training-batch augmentation ``data.augment_transpose`` asks for (None: none)."""
  return augment.make_transposer(build_converter(data_cfg), data_cfg.augment_transpose)


def load_split(config: ml_collections.ConfigDict, split: str) -> Batch:
  """Arrays of one split of ``config.data.dataset`` (see :func:`load_split_with_stats`)."""
  return load_split_with_stats(config, split)[0]


def load_split_with_stats(config: ml_collections.ConfigDict, split: str
                          ) -> tuple[Batch, dict[str, Any] | None]:
  """Arrays of one split of ``config.data.dataset``, and what was skipped building them.

  ``groove``/``tfds``: the Groove MIDI Dataset; ``note_sequences`` (alias ``folk``, e.g.
  the music21 folk collection of ``flax_musicvae.pipelines.folk_melodies``): the
  NoteSequence TFRecord at ``data.path``, split by id hash (``data.eval_fraction``, default 0.1).

  The training split is converted in the converter's train mode (seeded by
  ``train.seed``), the others in eval mode, as Magenta does. The stats (``groove``
  only, else None) count files and windows, with each skipped file and its reason.
  """
  data_cfg = config.data
  converter = build_converter(data_cfg)
  mode = "train" if split == "train" else "eval"
  if data_cfg.dataset == "groove":
    arrays = groove.load_groove_split(
        data_path(data_cfg.path), split, converter, resolve_path(data_cfg.cache_dir),
        mode=mode, seed=config.train.seed, progress=jax.process_index() == 0)
  elif data_cfg.dataset == "tfds":
    arrays = load_tfds_split(data_cfg, split, converter, mode, config.train.seed)
  elif data_cfg.dataset in NOTE_SEQUENCE_DATASETS:
    arrays = load_note_sequence_split(config, split, converter, mode)
  else:
    raise ValueError(f"data.dataset must be 'groove', 'tfds' or one of "
                     f"{NOTE_SEQUENCE_DATASETS}, got {data_cfg.dataset!r}")
  stats = json.loads(str(arrays["stats"])) if "stats" in arrays else None
  return {k: np.asarray(arrays[k]) for k in FIELDS}, stats


def describe_stats(split: str, stats: dict[str, Any] | None) -> str:
  """One line: a split's examples and the files that gave none, with reasons."""
  if stats is None:
    return f"data {split}: no per-file report for this dataset"
  skipped = stats.get("skipped")
  if skipped is None:  # a cache built before files were named: counts only
    skipped = [{"file": f"{n} file(s)", "reason": reason}
               for reason, n in stats["files_skipped"].items()]
  count = len(skipped) if "skipped" in stats else sum(stats["files_skipped"].values())
  line = (f"data {split}: {stats['examples']} examples from {stats['files']} files, "
          f"{count} without examples")
  if not skipped:
    return line
  shown = "; ".join(f"{s['file']}: {s['reason']}" for s in skipped[:3])
  more = f"; {len(skipped) - 3} more in data_report.json" if len(skipped) > 3 else ""
  return f"{line} ({shown}{more})"


def load_note_sequence_split(config: ml_collections.ConfigDict, split: str, converter,
                             mode: str) -> Batch:
  """``data.path`` (a NoteSequence TFRecord) padded to ``model.max_seq_len``."""
  data_cfg = config.data
  if not data_cfg.path:
    raise ValueError(f"data.dataset={data_cfg.dataset!r} needs data.path: a NoteSequence "
                     "TFRecord (pipelines.convert_dir or pipelines.folk_melodies)")
  arrays = note_sequence_dataset.load_note_sequence_split(
      data_path(data_cfg.path), split, converter, resolve_path(data_cfg.cache_dir),
      mode=mode, seed=config.train.seed, eval_fraction=data_cfg.eval_fraction,
      max_seq_len=config.model.max_seq_len, min_examples=config.train.batch_size,
      progress=jax.process_index() == 0)
  check_depths(arrays, config.model)
  return arrays


def check_depths(arrays: Batch, model_cfg: ml_collections.ConfigDict) -> None:
  """The arrays' feature depths are the model's ``input/output/control_depth``."""
  for field in ("input", "output", "control"):
    got, want = arrays[f"{field}s"].shape[-1], model_cfg[f"{field}_depth"]
    if got != want:
      raise ValueError(f"the data's {field}s have depth {got} but model.{field}_depth is "
                       f"{want}: data.converter_kwargs and the model config disagree")


def load_tfds_split(data_cfg: ml_collections.ConfigDict, split: str, converter, mode: str,
                    seed: int) -> Batch:
  """``data.tfds_name`` (e.g. ``groove/4bar-midionly``) through tensorflow-datasets.

  Each record's MIDI goes through the converter, as Magenta's ``--tfds_name`` input does;
  the arrays are cached in ``data.cache_dir``. With ``data.path`` set, tfds is fed that
  local copy of the dataset instead of downloading it
  (``flax_musicvae.pipelines.tfds_groove``).
  """
  cache_dir = resolve_path(data_cfg.cache_dir)
  key = cache_key(TFDS_CACHE_VERSION, dict(
      tfds_name=data_cfg.tfds_name, split=split, converter=repr(converter),
      mode=Mode(mode).value, seed=seed, path=data_cfg.path))
  cache = cache_dir / f"tfds_{data_cfg.tfds_name.replace('/', '_')}_{split}_{key}.npz"
  if cache.exists():
    with np.load(cache) as cached:
      return {k: cached[k] for k in FIELDS}
  local = {"source_dir": data_path(data_cfg.path)} if data_cfg.path else {}
  dataset = tfds_groove.load(data_cfg.tfds_name, split, cache_dir / "tfds", **local)
  rng = np.random.default_rng(seed)
  examples = []
  for record in dataset.as_numpy_iterator():
    ns = note_seq.midi_to_note_sequence(record["midi"])
    examples.append(converter.to_tensors(ns, mode, rng))
  inputs = [x for e in examples for x in e.inputs]
  outputs = [x for e in examples for x in e.outputs]
  controls = [x for e in examples for x in e.controls]
  lengths = np.array([n for e in examples for n in e.lengths], np.int32)
  steps = int(lengths.max(initial=1))
  arrays = {"inputs": pad_tensors(inputs, steps, converter.input_depth),
            "outputs": pad_tensors(outputs, steps, converter.output_depth),
            "controls": pad_tensors(controls, steps, converter.control_depth),
            "lengths": lengths}
  cache_dir.mkdir(parents=True, exist_ok=True)
  np.savez(cache, **arrays)
  return arrays


def num_examples(arrays: Batch) -> int:
  return len(arrays["lengths"])


def check_enough_examples(arrays: Batch, batch_size: int, what: str) -> None:
  n = num_examples(arrays)
  if n < batch_size:
    raise ValueError(
        f"{what} has {n} examples, fewer than one batch of {batch_size}: use more data "
        f"or a smaller train.batch_size (the original Magenta would wait forever here)")


@functools.lru_cache(maxsize=4)
def _epoch_permutation(seed: int, epoch: int, n: int) -> np.ndarray:
  return np.random.default_rng([seed, epoch]).permutation(n)


def batch_indices(n: int, global_batch_size: int, seed: int, step: int) -> np.ndarray:
  """Example indices of global batch ``step`` in the shuffled epoch stream."""
  positions = np.arange(step * global_batch_size, (step + 1) * global_batch_size)
  epochs, offsets = np.divmod(positions, n)
  out = np.empty_like(positions)
  for epoch in np.unique(epochs):
    sel = epochs == epoch
    out[sel] = _epoch_permutation(seed, int(epoch), n)[offsets[sel]]
  return out


def host_slice(global_batch_size: int, process_index: int, process_count: int) -> slice:
  if global_batch_size % process_count:
    raise ValueError(f"batch size {global_batch_size} is not divisible by the "
                     f"{process_count} hosts")
  per_host = global_batch_size // process_count
  return slice(process_index * per_host, (process_index + 1) * per_host)


def train_batches(arrays: Batch, global_batch_size: int, seed: int, start_step: int = 0,
                  process_index: int = 0, process_count: int = 1,
                  augment: Callable[[Batch, np.ndarray], Batch] | None = None
                  ) -> Iterator[Batch]:
  """This host's part of global batches ``start_step, start_step + 1, ...`` (endless).

  ``augment(batch, uniforms)`` (e.g. :class:`flax_musicvae.data.augment.Transposer`)
  transforms each batch with per-example uniform draws that depend only on
  ``(seed, step)`` and the example's row in the global batch, so resuming and
  multi-host runs see the same augmented data. Raises at once (not at the first
  ``next``) when there is less than one batch of data.
  """
  check_enough_examples(arrays, global_batch_size, "the training split")
  n = num_examples(arrays)
  rows = host_slice(global_batch_size, process_index, process_count)

  def generate():
    for step in itertools.count(start_step):
      idx = batch_indices(n, global_batch_size, seed, step)[rows]
      batch = {k: arrays[k][idx] for k in FIELDS}
      if augment is not None:
        uniforms = np.random.default_rng([seed, step, _AUGMENT_STREAM]).random(global_batch_size)
        batch = augment(batch, uniforms[rows])
      yield batch

  return generate()


def eval_batches(arrays: Batch, global_batch_size: int, num_batches: int = 0,
                 process_index: int = 0, process_count: int = 1) -> Iterator[Batch]:
  """Full batches in split order (``num_batches`` 0: all of them; a partial tail is dropped)."""
  check_enough_examples(arrays, global_batch_size, "the evaluation split")
  available = num_examples(arrays) // global_batch_size
  rows = host_slice(global_batch_size, process_index, process_count)
  count = min(num_batches, available) if num_batches else available
  starts = range(0, count * global_batch_size, global_batch_size)
  return ({k: arrays[k][start:start + global_batch_size][rows] for k in FIELDS}
          for start in starts)


class Prefetcher:
  """Runs ``iterator`` (and ``transform``, e.g. the device transfer) in a background thread.

  Keeps up to ``buffer_size`` results ready; exceptions in the thread are re-raised by
  ``next``. ``close()`` stops the thread.
  """

  _DONE = object()

  def __init__(self, iterator: Iterator[Any], transform: Callable[[Any], Any] = lambda x: x,
               buffer_size: int = 2):
    self._queue: queue.Queue = queue.Queue(maxsize=buffer_size)
    self._stop = threading.Event()
    self._thread = threading.Thread(target=self._fill, args=(iterator, transform), daemon=True)
    self._thread.start()

  def _put(self, item) -> bool:
    while not self._stop.is_set():
      try:
        self._queue.put(item, timeout=0.1)
        return True
      except queue.Full:
        continue
    return False

  def _fill(self, iterator, transform) -> None:
    try:
      for item in iterator:
        if not self._put((transform(item), None)):
          return
      self._put((self._DONE, None))
    except BaseException as e:  # pylint: disable=broad-except
      self._put((None, e))

  def __iter__(self) -> "Prefetcher":
    return self

  def __next__(self):
    item, error = self._queue.get()
    if error is not None:
      raise error
    if item is self._DONE:
      raise StopIteration
    return item

  def close(self) -> None:
    self._stop.set()
    self._thread.join(timeout=5)

  def __enter__(self) -> "Prefetcher":
    return self

  def __exit__(self, *exc_info) -> None:
    self.close()


def shard_batch(batch: Batch, sharding: jax.sharding.Sharding) -> dict[str, jax.Array]:
  """This host's rows -> global arrays laid out along the mesh's batch axis."""
  return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in batch.items()}
