"""Building one split: every file through the fast (else reference) path in worker
processes, packed sparse, assembled into arrays and counts."""

from __future__ import annotations

import collections
import dataclasses
import multiprocessing
import os
import sys

import numpy as np

from flax_musicvae.data import midi_fast
from flax_musicvae.data.arrays import pad_tensors
from flax_musicvae.data.converter import Mode
from flax_musicvae.data.groove import GrooveConverter
from flax_musicvae.pipelines.groove.examples import FileExamples
from flax_musicvae.pipelines.groove.fast import fast_file_examples
from flax_musicvae.pipelines.groove.reference import reference_file_examples
from flax_musicvae.pipelines.groove.sources import METADATA_FIELDS, _Source, read_split_index


def _file_examples(args) -> tuple[int, dict | None, str | None]:
  """Worker: one file's packed examples or why it was skipped.

  The fast path is tried first; files it does not cover, or cannot decode, go
  through the reference path, whose failure skips the file.
  """
  index, midi, row, split_bars, converter, mode, seed = args
  result, fast_error = None, None
  try:
    result = fast_file_examples(midi, row, split_bars, converter, mode,
                                np.random.default_rng([seed, index]))
  except Exception as e:  # pylint: disable=broad-except
    fast_error = e  # the reference path decides
  if result is None:
    try:
      result = reference_file_examples(midi, row, split_bars, converter, mode,
                                       np.random.default_rng([seed, index]))
    except Exception as e:  # pylint: disable=broad-except
      error = fast_error if isinstance(fast_error, midi_fast.MidiError) else e
      return index, None, f"unreadable: {type(error).__name__}: {error}"
  return index, _pack(result, converter), None


@dataclasses.dataclass
class _Sparse:
  """A mostly-zero float32 array as its shape, flat nonzero indices and values.

  Workers send examples this way: a groove step is ~85 % zeros.
  """

  shape: tuple[int, ...]
  index: np.ndarray
  values: np.ndarray

  @classmethod
  def of(cls, array: np.ndarray) -> "_Sparse":
    flat = array.reshape(-1)
    index = np.flatnonzero(flat)
    return cls(array.shape, index.astype(np.int32), flat[index])

  def write_into(self, out: np.ndarray) -> None:
    """Stores the array in the zero-filled ``out[:n, :steps]``."""
    n, steps = self.shape[:2]
    if out.shape[1] == steps:
      out[:n].reshape(-1)[self.index] = self.values
    else:
      dense = np.zeros(self.shape, out.dtype)
      dense.reshape(-1)[self.index] = self.values
      out[:n, :steps] = dense


def _pack(result: FileExamples, converter: GrooveConverter) -> dict:
  """Sparse stacked arrays (``inputs`` None when equal to ``outputs``), counts."""
  t = result.tensors
  steps = max(t.lengths, default=0)
  outputs = pad_tensors(t.outputs, steps, converter.output_depth)
  inputs = pad_tensors(t.inputs, steps, converter.input_depth)
  return dict(
      outputs=_Sparse.of(outputs),
      inputs=None if np.array_equal(inputs, outputs) else _Sparse.of(inputs),
      controls=_Sparse.of(pad_tensors(t.controls, steps, converter.control_depth)),
      lengths=np.array(t.lengths, np.int32), window=np.array(result.window_index, np.int32),
      windows=result.windows, dropped=result.dropped,
      used_reference=result.used_reference)


def build_split(root: str | os.PathLike, split: str, converter: GrooveConverter,
                split_bars: int | None = None, mode: Mode | str = Mode.EVAL,
                seed: int = 0, workers: int = 2,
                progress: bool = False) -> tuple[dict[str, np.ndarray], dict]:
  """Examples and counts of one split, without caching (see ``load_groove_split``)."""
  source = _Source(root)
  rows = read_split_index(root).get(split)
  if rows is None:
    raise ValueError(f"unknown split {split!r}; info.csv has "
                     f"{sorted(read_split_index(root))}")
  split_bars = split_bars or converter.split_bars
  if not split_bars:
    raise ValueError("pass split_bars (2 or 4, as tfds) or a converter with split_bars")
  midis = [source.read_midi(r["midi_filename"]) for r in rows]
  tasks = [(i, midi, r, split_bars, converter, Mode(mode), seed)
           for i, (midi, r) in enumerate(zip(midis, rows)) if midi is not None]
  unread = [(i, None, source.unreadable(r["midi_filename"]))
            for i, (midi, r) in enumerate(zip(midis, rows)) if midi is None]
  results = sorted(_run(tasks, workers, progress, desc=f"groove {split}") + unread,
                   key=lambda r: r[0])
  return _assemble(rows, results, converter, split_bars)


def _start_method() -> str | None:
  """"fork" (fast start) unless JAX/TF threads already run here: forking them can deadlock."""
  threaded = any(m in sys.modules for m in ("jax", "tensorflow"))
  if threaded or "fork" not in multiprocessing.get_all_start_methods():
    return "spawn"
  return "fork"


def _run(tasks, workers: int, progress: bool, desc: str):
  if workers > 1:
    context = multiprocessing.get_context(_start_method())
    with context.Pool(workers) as pool:
      results = list(_progress(pool.imap_unordered(_file_examples, tasks, chunksize=8),
                               len(tasks), progress, desc))
  else:
    results = list(_progress(map(_file_examples, tasks), len(tasks), progress, desc))
  return sorted(results, key=lambda r: r[0])


def _progress(iterable, total: int, enabled: bool, desc: str):
  """A progress bar on a terminal (none in a log file, like the trainer's)."""
  if not enabled or not sys.stderr.isatty():
    return iterable
  from tqdm import tqdm  # pylint: disable=g-import-not-at-top
  return tqdm(iterable, total=total, desc=desc, unit="file")


def _assemble(rows, results, converter, split_bars) -> tuple[dict[str, np.ndarray], dict]:
  stats = dict(files=len(rows), files_skipped=collections.Counter(), windows=0,
               windows_dropped=collections.Counter(), reference_path_files=0)
  packed, meta = [], collections.defaultdict(list)
  skipped = []  # every file that gives no example, with why
  for index, result, error in results:
    name = rows[index]["midi_filename"]
    if error is not None:
      stats["files_skipped"][error] += 1
      skipped.append({"file": name, "reason": error})
      continue
    if not len(result["lengths"]):
      reasons = ", ".join(f"{r}: {n}" for r, n in sorted(result["dropped"].items()))
      skipped.append({"file": name, "reason": f"no example ({reasons or 'no windows'})"})
    stats["windows"] += result["windows"]
    stats["windows_dropped"].update(result["dropped"])
    stats["reference_path_files"] += result["used_reference"]
    packed.append(result)
    for field in METADATA_FIELDS:
      meta[field] += [rows[index][field]] * len(result["lengths"])
  steps = max((p["outputs"].shape[1] for p in packed if len(p["lengths"])),
              default=converter.steps_per_bar * split_bars)

  def stack(name, depth):
    out = np.zeros((sum(len(p["lengths"]) for p in packed), steps, depth), np.float32)
    at = 0
    for p in packed:
      (p[name] or p["outputs"]).write_into(out[at:])
      at += len(p["lengths"])
    return out

  arrays = dict(outputs=stack("outputs", converter.output_depth),
                controls=stack("controls", converter.control_depth))
  arrays["inputs"] = (arrays["outputs"] if all(p["inputs"] is None for p in packed)
                      else stack("inputs", converter.input_depth))
  for name in ("lengths", "window"):
    arrays[name] = np.concatenate([p[name] for p in packed] + [np.zeros(0, np.int32)])
  for field in METADATA_FIELDS:
    arrays[field] = (np.array(meta[field], np.int32) if field == "bpm"
                     else np.array(meta[field], dtype=str))
  stats["examples"] = len(arrays["lengths"])
  stats["files_skipped"] = dict(stats["files_skipped"])
  stats["windows_dropped"] = dict(stats["windows_dropped"])
  stats["skipped"] = skipped
  return arrays, stats
