r"""The Groove MIDI Dataset as cached GrooVAE training arrays, offline.

Windowing is that of tensorflow-datasets' ``groove/{2,4}bar-midionly`` (which Magenta
trains on): per file, bar length ``60 / bpm * numerator`` from info.csv,
``total_bars = round(pretty_midi end time / bar)``, windows of ``split_bars`` bars with
a 1-bar hop, each cut with pretty_midi's ``adjust_times`` and written back to MIDI;
Magenta then reads each window with ``note_seq.midi_to_note_sequence`` and converts it
with its ``GrooveConverter``. Windows that give no example are dropped and counted by
reason.

Two paths compute the same arrays:

* ``reference_file_examples``: that chain itself (pretty_midi, note_seq); slow
  (0.1-0.3 s per window: tfds deep-copies the whole file for every window);
* ``fast_file_examples``: ``midi_fast.read_midi`` plus a numpy re-enactment of
  ``adjust_times``, the MIDI write (tick rounding, tempo rescaling) and re-read, for
  files with one tempo and one instrument (all of the dataset); other files, and
  files it cannot decode, go through the reference path. Tests check both give
  identical arrays.

``load_groove_split`` caches one split as an ``.npz`` keyed by the converter settings,
mode, seed and a hash of info.csv and the split's files, so training never re-parses
MIDI. Unreadable or missing files are skipped and counted with their reason; ``stats``
lists each file that gives no example (``skipped``: file, reason).

Example:
  python -m pipelines.groove --root=/data/groove-v1.0.0-midionly \
    --cache_dir=/tmp/groove_cache --split_bars=4
"""

from __future__ import annotations

import argparse
import collections
import csv
import dataclasses
import hashlib
import io
import json
import multiprocessing
import os
import pathlib
import sys
import tempfile
import zipfile
from typing import Iterator, Sequence

import numpy as np

import pipelines
from flax_musicvae import data_fetch
from flax_musicvae.data import midi_fast
from flax_musicvae.data.converter import ConverterTensors, Mode
from flax_musicvae.data.groove import (GrooveConverter, REDUCED_DRUM_PITCH_CLASSES,
                                       ROLAND_DRUM_PITCH_CLASSES)

SPLITS = ("train", "validation", "test")
CACHE_VERSION = 1
METADATA_FIELDS = ("id", "midi_filename", "drummer", "session", "style", "bpm",
                   "beat_type", "time_signature")
# Why a window gives no example.
NOT_4_4 = "not_4_4_or_tempo_change"
NO_NOTES = "no_notes"
TOO_SHORT = "last_bar_empty"


# ---------------------------------------------------------------- sources ----
class _Source:
  """The dataset's ``groove/`` folder, a folder holding it, or the official zip."""

  def __init__(self, root: str | os.PathLike):
    root = pathlib.Path(root)
    self._zip = None
    if root.is_file() and zipfile.is_zipfile(root):
      self._zip = zipfile.ZipFile(root)
      names = set(self._zip.namelist())
      prefixes = [p for p in ("groove/", "") if p + "info.csv" in names]
      if not prefixes:
        raise FileNotFoundError(f"{root} has no groove/info.csv")
      self._prefix = prefixes[0]
    else:
      folders = [f for f in (root, root / "groove") if (f / "info.csv").is_file()]
      if not folders:
        raise FileNotFoundError(
            f"no info.csv in {root} or {root / 'groove'}: pass the Groove MIDI "
            "Dataset folder, the folder holding 'groove/', or the official zip")
      self._folder = folders[0]

  def read(self, name: str) -> bytes:
    if self._zip is not None:
      return self._zip.read(self._prefix + name)
    return (self._folder / name).read_bytes()

  def read_midi(self, name: str) -> bytes | None:
    """A listed MIDI file's bytes; ``None`` when it cannot be read (see ``unreadable``)."""
    try:
      return self.read(name)
    except (OSError, KeyError):
      return None

  def unreadable(self, name: str) -> str:
    """Why ``read_midi(name)`` gave nothing: the skip reason."""
    if self._zip is not None:
      return "missing_file"
    file = self._folder / name
    if file.is_symlink() and not file.exists():
      return "broken_link"
    if file.is_dir():
      return "directory"
    if not file.exists():
      return "missing_file"
    try:
      file.read_bytes()
    except OSError as e:
      return f"unreadable: {e.strerror or type(e).__name__}"
    return "unreadable"


def read_split_index(root: str | os.PathLike) -> dict[str, list[dict]]:
  """The official split: info.csv rows grouped by their ``split``, in file order."""
  text = _Source(root).read("info.csv").decode("utf-8")
  rows = collections.defaultdict(list)
  for row in csv.DictReader(io.StringIO(text)):
    rows[row["split"]].append(row)
  return dict(rows)


def _bar_seconds(row: dict) -> float:
  """tfds: ``60 / bpm * beats_per_bar`` (numerator of the time signature)."""
  return 60 / int(row["bpm"]) * int(row["time_signature"].split("-")[0])


# ----------------------------------------------------------- window results --
@dataclasses.dataclass
class FileExamples:
  """The examples of one file: per tfds window, its examples or why it has none."""

  windows: int = 0
  window_index: list[int] = dataclasses.field(default_factory=list)
  tensors: ConverterTensors = dataclasses.field(default_factory=ConverterTensors)
  dropped: collections.Counter = dataclasses.field(default_factory=collections.Counter)
  used_reference: bool = False

  def add(self, window: int, tensors: ConverterTensors | None, reason: str | None):
    self.windows = max(self.windows, window + 1)
    if reason is not None:
      self.dropped[reason] += 1
      return
    self.window_index += [window] * len(tensors)
    self.tensors.extend(tensors)


def _convert(converter: GrooveConverter, meter_ok: bool, notes: dict | None,
             mode: Mode, rng) -> tuple[ConverterTensors | None, str | None]:
  """Shared tail of both paths: the drop reasons, then the converter."""
  if not meter_ok:
    return None, NOT_4_4
  if notes is None or not len(notes["steps"]):
    return None, NO_NOTES
  try:
    tensors = converter.encode_notes(mode=mode, rng=rng, **notes)
  except ValueError as e:
    return None, f"conversion_error: {e}"
  return (tensors, None) if len(tensors) else (None, TOO_SHORT)


# ---------------------------------------------------------- reference path --
def tfds_window_midis(midi: bytes, row: dict, split_bars: int) -> Iterator[bytes]:
  """The MIDI bytes of each tfds ``groove/<split_bars>bar`` window (pretty_midi)."""
  import copy  # pylint: disable=g-import-not-at-top
  import pretty_midi  # pylint: disable=g-import-not-at-top
  bar = _bar_seconds(row)
  pm = pretty_midi.PrettyMIDI(io.BytesIO(midi))
  total_bars = int(round(pm.get_end_time() / bar))
  for i in range(total_bars - split_bars + 1):
    window = copy.deepcopy(pm)
    window.adjust_times([i * bar, (i + split_bars) * bar], [0, split_bars * bar])
    window.time_signature_changes = pm.time_signature_changes
    out = io.BytesIO()
    window.write(out)
    yield out.getvalue()


def _reference_notes(ns, converter: GrooveConverter) -> tuple[bool, dict | None]:
  """(meter usable, notes for ``encode_notes``) from a NoteSequence, via note_seq."""
  import note_seq  # pylint: disable=g-import-not-at-top
  from note_seq import sequences_lib  # pylint: disable=g-import-not-at-top
  try:
    qns = sequences_lib.quantize_note_sequence(ns, converter.steps_per_quarter)
  except (note_seq.BadTimeSignatureError, note_seq.NonIntegerStepsPerBarError,
          note_seq.NegativeTimeError, note_seq.MultipleTimeSignatureError,
          note_seq.MultipleTempoError):
    return False, None
  if sequences_lib.steps_per_bar_in_quantized_sequence(qns) != converter.steps_per_bar:
    return False, None
  notes = qns.notes
  return True, dict(
      steps=np.array([n.quantized_start_step for n in notes], np.int64),
      pitches=np.array([n.pitch for n in notes], np.int64),
      velocities=np.array([n.velocity for n in notes], np.int64),
      start_times=np.array([n.start_time for n in notes], np.float64),
      qpm=qns.tempos[0].qpm)


def reference_file_examples(midi: bytes, row: dict, split_bars: int,
                            converter: GrooveConverter, mode: Mode | str = Mode.EVAL,
                            rng: np.random.Generator | None = None) -> FileExamples:
  """tfds windowing + ``note_seq.midi_to_note_sequence`` + the converter.

  Raises whatever pretty_midi raises for an unreadable file.
  """
  import note_seq  # pylint: disable=g-import-not-at-top
  out = FileExamples(used_reference=True)
  for i, window in enumerate(tfds_window_midis(midi, row, split_bars)):
    meter_ok, notes = _reference_notes(note_seq.midi_to_note_sequence(window), converter)
    out.add(i, *_convert(converter, meter_ok, notes, Mode(mode), rng))
  return out


# --------------------------------------------------------------- fast path --
def _time_to_tick(times: np.ndarray, scale: np.ndarray | float,
                  length: np.ndarray | int) -> np.ndarray:
  """pretty_midi ``time_to_tick`` on a one-tempo table ``scale * arange(length)``."""
  times = np.asarray(times, np.float64)
  scale = np.broadcast_to(scale, times.shape)
  length = np.broadcast_to(length, times.shape)
  k = np.clip(np.ceil(times / scale).astype(np.int64), 0, None)
  k = np.where((k > 0) & (scale * (k - 1) >= times), k - 1, k)
  k = np.where(scale * k < times, k + 1, k)  # first k with table[k] >= time
  beyond = k >= length
  last = length - 1
  extrapolated = np.rint(last + (times - scale * last) / scale).astype(np.int64)
  closer_below = (k > 0) & (np.abs(times - scale * (k - 1)) < np.abs(times - scale * k))
  return np.where(beyond, extrapolated, np.where(closer_below, k - 1, k))


def _interp_window(x: np.ndarray, t0: np.ndarray, t1: np.ndarray,
                   length: float) -> np.ndarray:
  """``np.interp(x, [t0, t1], [0, length])`` for x in [t0, t1], elementwise."""
  slope = (length - 0.0) / (t1 - t0)
  y = slope * (x - t0) + 0.0
  return np.where(x == t0, 0.0, np.where(x == t1, length, y))


def _meter_ok(time_signatures: list[tuple[int, int, float]],
              converter: GrooveConverter) -> bool:
  """note_seq's quantization checks on (numerator, denominator, time) + 4/4 test."""
  if not time_signatures:
    return converter.steps_per_bar == converter.steps_per_quarter * 4
  first = time_signatures[0]
  ordered = sorted(time_signatures, key=lambda ts: ts[2])
  if ordered[0][2] != 0 and ordered[0][:2] != (4, 4):
    return False
  if any(ts[:2] != first[:2] for ts in ordered[1:]):
    return False
  numerator, denominator, _ = first
  if numerator == 0 or denominator & (denominator - 1):
    return False
  return converter.steps_per_quarter * (4.0 / denominator * numerator) == (
      converter.steps_per_bar)


def _window_pairs(starts: np.ndarray, ends: np.ndarray, t0: np.ndarray,
                  t1: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """(window, note) pairs with ``t0 <= start`` and ``end <= t1``, by window then note."""
  first = np.searchsorted(t1, ends, side="left")
  last = np.searchsorted(t0, starts, side="right") - 1
  counts = np.maximum(last - first + 1, 0)
  note = np.repeat(np.arange(len(starts)), counts)
  window = first[note] + np.arange(len(note)) - np.repeat(
      np.cumsum(counts) - counts, counts)
  order = np.lexsort((note, window))
  return window[order], note[order]


def _reread_order(win, pitch, velocity, on_tick, off_tick) -> np.ndarray:
  """Indices of the written notes in the order pretty_midi re-reads them.

  Per window the notes come in closing order. Where no note overlaps the next one
  of its pitch and none has zero length in ticks, each note-off closes its own
  note: the order is (off tick, pitch). Other windows are replayed event by event.
  """
  by_onset = np.lexsort((np.arange(len(win)), on_tick, pitch, win))
  w, p = win[by_onset], pitch[by_onset]
  a, b = on_tick[by_onset], off_tick[by_onset]
  bad = a >= b
  bad[:-1] |= (w[1:] == w[:-1]) & (p[1:] == p[:-1]) & (b[:-1] > a[1:])
  replay = np.isin(win, w[bad])
  simple = np.flatnonzero(~replay)
  notes = [simple[np.lexsort((pitch[simple], off_tick[simple], win[simple]))]]
  for window in np.unique(w[bad]):
    idx = np.flatnonzero(win == window)
    pairs = _reread_window_slow(pitch[idx].tolist(), velocity[idx].tolist(),
                                on_tick[idx].tolist(), off_tick[idx].tolist())
    notes.append(idx[pairs[:, 0]])
  notes = np.concatenate(notes)
  return notes[np.argsort(win[notes], kind="stable")]


def _reread_window_slow(pitch, velocity, on_tick, off_tick) -> np.ndarray:
  """pretty_midi's write-then-read of one window's notes, replayed event by event.

  Returns rows (note index, closing tick) in the order the re-read notes appear.
  """
  events = []  # (tick, pitch, velocity, insertion, note, is_on) as pretty_midi sorts
  for i in range(len(pitch)):
    events.append((on_tick[i], pitch[i], velocity[i], 2 * i, i, True))
    events.append((off_tick[i], pitch[i], 0, 2 * i + 1, i, False))
  events.sort(key=lambda e: e[:2] + (e[2], e[3]))
  open_notes: dict[int, list[tuple[int, int]]] = {}
  notes = []
  for tick, p, _, _, i, is_on in events:
    if is_on:
      open_notes.setdefault(p, []).append((i, tick))
    elif p in open_notes:
      closing = [j for j, t in open_notes[p] if t != tick]
      notes += [(j, tick) for j in closing]
      keep = [(j, t) for j, t in open_notes[p] if t == tick]
      if closing and keep:
        open_notes[p] = keep
      else:
        del open_notes[p]
  return np.array(notes, np.int64).reshape(-1, 2)


def fast_file_examples(midi: bytes, row: dict, split_bars: int,
                       converter: GrooveConverter, mode: Mode | str = Mode.EVAL,
                       rng: np.random.Generator | None = None) -> FileExamples | None:
  """``reference_file_examples`` in numpy; ``None`` for files it does not cover.

  Raises:
    midi_fast.MidiError: the file cannot be decoded.
  """
  data = midi_fast.read_midi(midi)
  if len(data.tick_scales) != 1 or len(data.instruments) > 1:
    return None
  mode = Mode(mode)
  table = data.tick_to_time()
  bar = _bar_seconds(row)
  total_bars = int(round(data.end_time(table) / bar))
  out = FileExamples()
  num_windows = total_bars - split_bars + 1
  if num_windows <= 0:
    return out
  scale, res = data.tick_scales[0][1], data.resolution
  index = np.arange(num_windows)
  t0, t1, length = index * bar, (index + split_bars) * bar, split_bars * bar
  # adjust_times: window bounds snapped to ticks, tempo rescaled to the new length.
  snapped_end = _time_to_tick(t1, scale, len(table))
  table_length = np.maximum(snapped_end, 0) + 1
  ot0 = scale * _time_to_tick(t0, scale, table_length)
  ot1 = scale * _time_to_tick(t1, scale, table_length)
  new_scale = 60.0 / (60.0 / (scale * res) * ((ot1 - ot0) / (length - 0.0)) * res)
  # write (integer microseconds per quarter) and re-read.
  tempo_us = np.trunc(6e7 / (60.0 / (new_scale * res)))
  read_scale = 60.0 / ((6e7 / tempo_us) * res)
  qpm = 60.0 / (read_scale * res)
  signatures = _window_signatures(data, table, new_scale, read_scale)
  notes = _fast_window_notes(data, table, t0, t1, length, new_scale, read_scale,
                             converter)
  for w in index:
    window_notes = notes.get(int(w))
    if window_notes is not None:
      window_notes["qpm"] = float(qpm[w])
    meter_ok = _meter_ok(sorted([(n, d, times[w]) for n, d, times in signatures],
                                key=lambda ts: ts[2]), converter)
    out.add(int(w), *_convert(converter, meter_ok, window_notes, mode, rng))
  return out


def _window_signatures(data, table, new_scale: np.ndarray, read_scale: np.ndarray):
  """Time signatures of every written and re-read window: (num, den, times[window]).

  tfds keeps the whole file's signatures (original times); ``write`` puts a 4/4 at
  tick 0 first when none is at time 0, then sorts them (stably) by their new tick.
  """
  original = [(num, den, table[tick]) for num, den, tick in data.time_signatures]
  ticks = [_time_to_tick(np.full(len(new_scale), t), new_scale, 2) for _, _, t in original]
  written = [(num, den, tick) for (num, den, _), tick in zip(original, ticks)]
  if not original or min(t for _, _, t in original) > 0.0:
    written.insert(0, (4, 4, np.zeros(len(new_scale), np.int64)))
  return [(num, den, read_scale * tick) for num, den, tick in written]


def _fast_window_notes(data, table, t0, t1, length, new_scale, read_scale,
                       converter) -> dict[int, dict]:
  """Per window with notes: the re-read notes for ``encode_notes`` (without qpm)."""
  if not data.instruments:
    return {}
  inst = data.instruments[0]
  win, note = _window_pairs(table[inst.starts], table[inst.ends], t0, t1)
  start = _interp_window(table[inst.starts][note], t0[win], t1[win], length)
  end = _interp_window(table[inst.ends][note], t0[win], t1[win], length)
  start, end = (start > 0) * start, (end > 0) * end
  valid = end > start
  win, note, start, end = win[valid], note[valid], start[valid], end[valid]
  on_tick = _time_to_tick(start, new_scale[win], 2)
  off_tick = _time_to_tick(end, new_scale[win], 2)
  pitch, velocity = inst.pitches[note], inst.velocities[note]
  on_index = _reread_order(win, pitch, velocity, on_tick, off_tick)
  win_sorted = win[on_index]
  times = read_scale[win_sorted] * on_tick[on_index]
  qpm = 60.0 / (read_scale[win_sorted] * data.resolution)
  sps = converter.steps_per_quarter * qpm / 60.0
  steps = np.floor(times * sps + 0.5).astype(np.int64)
  bounds = np.flatnonzero(np.r_[True, win_sorted[1:] != win_sorted[:-1]])
  result = {}
  for lo, hi in zip(bounds, np.r_[bounds[1:], len(win_sorted)]):
    result[int(win_sorted[lo])] = dict(
        steps=steps[lo:hi], pitches=pitch[on_index[lo:hi]],
        velocities=velocity[on_index[lo:hi]], start_times=times[lo:hi])
  return result


# ------------------------------------------------------------- split build --
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


def _pad(arrays: Sequence[np.ndarray], steps: int, depth: int) -> np.ndarray:
  out = np.zeros((len(arrays), steps, depth), np.float32)
  for i, a in enumerate(arrays):
    out[i, :len(a)] = a
  return out


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
  outputs = _pad(t.outputs, steps, converter.output_depth)
  inputs = _pad(t.inputs, steps, converter.input_depth)
  return dict(
      outputs=_Sparse.of(outputs),
      inputs=None if np.array_equal(inputs, outputs) else _Sparse.of(inputs),
      controls=_Sparse.of(_pad(t.controls, steps, converter.control_depth)),
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


# ------------------------------------------------------------------ cache ----
def _cache_path(root, split, converter, split_bars, mode, seed, cache_dir) -> pathlib.Path:
  """Cache file named by a hash of the settings, info.csv and the split's files."""
  source = _Source(root)
  digest = hashlib.sha256(json.dumps(dict(
      version=CACHE_VERSION, converter=repr(converter), split_bars=split_bars,
      mode=Mode(mode).value, seed=seed)).encode())
  digest.update(source.read("info.csv"))
  for row in read_split_index(root).get(split, []):
    digest.update(source.read_midi(row["midi_filename"]) or b"<missing>")
  return (pathlib.Path(cache_dir) /
          f"groove_{split}_{split_bars}bar_{digest.hexdigest()[:20]}.npz")


def load_groove_split(root: str | os.PathLike, split: str, converter: GrooveConverter,
                      cache_dir: str | os.PathLike, split_bars: int | None = None,
                      mode: Mode | str = Mode.EVAL, seed: int = 0, workers: int = 2,
                      progress: bool = False) -> dict[str, np.ndarray]:
  """One split's examples, from the cache or built (then cached).

  Args:
    root: the dataset's ``groove/`` folder, the folder holding it, or the zip; when
      it does not exist and is named like the official dataset (or is empty), the
      official zip, downloaded into the cache first if needed (``data_fetch``).
    split: "train", "validation" or "test".
    converter: the representation (its ``split_bars`` is the example length).
    cache_dir: where ``groove_<split>_<bars>bar_<hash>.npz`` files live.
    split_bars: tfds window length in bars (default: ``converter.split_bars``).
    mode: converter mode; with note dropout the draws are seeded by ``seed`` and
      the file index, so a cache holds one fixed draw.
    workers: processes for a build.

  Returns:
    ``inputs``/``outputs``/``controls`` float32 ``[N, T, depth]``, ``lengths`` [N],
    ``window`` (tfds window index in its file) and per-example metadata
    (``id``, ``midi_filename``, ``drummer``, ``session``, ``style``, ``bpm``,
    ``beat_type``, ``time_signature``), plus ``stats`` (a JSON string of counts).
  """
  split_bars = split_bars or converter.split_bars
  root = data_fetch.groove_root(root)
  path = _cache_path(root, split, converter, split_bars, mode, seed, cache_dir)
  if path.exists():
    with np.load(path) as cached:
      arrays = {k: cached[k] for k in cached.files}
    if "inputs" not in arrays:
      arrays["inputs"] = arrays["outputs"]
    return arrays
  arrays, stats = build_split(root, split, converter, split_bars, mode, seed, workers,
                              progress)
  _save(path, arrays, stats)
  return dict(arrays, stats=np.array(json.dumps(stats)))


def _save(path: pathlib.Path, arrays: dict[str, np.ndarray], stats: dict) -> None:
  """Atomic write; ``inputs`` is left out when it equals ``outputs``."""
  path.parent.mkdir(parents=True, exist_ok=True)
  arrays = dict(arrays, stats=np.array(json.dumps(stats)))
  if arrays["inputs"] is arrays["outputs"]:
    del arrays["inputs"]
  with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".npz", delete=False) as f:
    np.savez(f, **arrays)
  os.replace(f.name, path)


# -------------------------------------------------------------------- CLI ----
def _converter_from_flags(args) -> GrooveConverter:
  return GrooveConverter(
      split_bars=args.split_bars, pitch_classes=ROLAND_DRUM_PITCH_CLASSES,
      inference_pitch_classes=REDUCED_DRUM_PITCH_CLASSES, humanize=args.humanize,
      tapify=args.tapify, fixed_velocities=args.fixed_velocities,
      add_instruments=args.add_instruments or None,
      hits_as_controls=args.hits_as_controls,
      max_note_dropout_probability=args.max_note_dropout_probability)


def main(argv: Sequence[str] | None = None) -> None:
  parser = argparse.ArgumentParser(
      prog="python -m pipelines.groove",
      description="Build the cached GrooVAE arrays of the Groove MIDI Dataset "
                  "(tfds groove/<N>bar-midionly windows) and print the counts.")
  parser.add_argument("--root", default="",
                      help="groove/ folder, the folder holding it, or the official zip "
                           "(default: the official zip, downloaded into "
                           f"${data_fetch.CACHE_ENV} or ~/.cache/flax_musicvae once)")
  parser.add_argument("--cache_dir", required=True)
  parser.add_argument("--split_bars", type=int, default=4, choices=(2, 4))
  parser.add_argument("--splits", nargs="+", default=list(SPLITS), choices=SPLITS)
  parser.add_argument("--mode", default="eval", choices=[m.value for m in Mode])
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--workers", type=int, default=2)
  parser.add_argument("--humanize", action="store_true")
  parser.add_argument("--tapify", action="store_true")
  parser.add_argument("--fixed_velocities", action="store_true")
  parser.add_argument("--add_instruments", type=int, nargs="*", default=[])
  parser.add_argument("--hits_as_controls", action="store_true")
  parser.add_argument("--max_note_dropout_probability", type=float, default=None)
  args = parser.parse_args(argv)
  converter = _converter_from_flags(args)
  for split in args.splits:
    with pipelines.user_errors(parser):
      arrays = load_groove_split(args.root, split, converter, args.cache_dir,
                                 mode=args.mode, seed=args.seed, workers=args.workers,
                                 progress=True)
    stats = json.loads(str(arrays["stats"]))
    print(f"{split}: {stats['files']} files, {stats['windows']} windows, "
          f"{stats['examples']} examples {arrays['outputs'].shape}; "
          f"dropped windows {stats['windows_dropped']}; "
          f"skipped files {stats['files_skipped']}")


if __name__ == "__main__":
  main()
