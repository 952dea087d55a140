"""The fast path: the reference path's windows re-enacted in numpy (``adjust_times``, the
MIDI write and re-read) for one-tempo, one-instrument files."""

from __future__ import annotations

import numpy as np

from flax_musicvae.data import midi_fast
from flax_musicvae.data.converter import Mode
from flax_musicvae.data.groove import GrooveConverter
from flax_musicvae.pipelines.groove.examples import FileExamples, _convert
from flax_musicvae.pipelines.groove.sources import _bar_seconds


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
