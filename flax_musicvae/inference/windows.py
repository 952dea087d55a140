"""Windows: the model-length pieces of an input an example comes from.

Bars are numbered from 1, as in a score. A "window" is the model's length in bars
(``window_bars``) starting at some bar; the converter's own candidates start every
``window_hop_bars`` bars (GrooVAE: one window after the other; melodies and drums:
every bar, Magenta's one-bar hop).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

from note_seq import sequences_lib
import numpy as np

from flax_musicvae.data import converter as converter_lib
from flax_musicvae.inference.inputs import (InputError, MultipleExtractedExamplesError,
                                            NoExtractedExamplesError, _infer_tensors,
                                            _name, check_input)


def window_bars(converter) -> int | None:
  """The model's window length in bars (None: the whole sequence is one example)."""
  return getattr(converter, "split_bars", None) or getattr(converter, "slice_bars", None)


def window_hop_bars(converter) -> int:
  """Bars between the starts of the converter's candidate windows."""
  bars = window_bars(converter) or 1
  if hasattr(converter, "split_bars"):  # GrooveConverter: hop_size steps (default a window)
    hop = getattr(converter, "hop_size", None)
    return max(1, hop // converter.steps_per_bar) if hop else bars
  return 1


def bar_seconds(ns, converter) -> float:
  """Length of one bar of ``ns`` in seconds (its first tempo; 120 qpm without one)."""
  qpm = ns.tempos[0].qpm if ns.tempos else 120.0
  per_quarter = getattr(converter, "steps_per_quarter", 4)
  return 60.0 / qpm * getattr(converter, "steps_per_bar", 16) / per_quarter


def num_bars(ns, converter) -> int:
  """Bars that hold a note onset of ``ns`` (a note sounding on into a bar does not count)."""
  bar = bar_seconds(ns, converter)
  step = bar / getattr(converter, "steps_per_bar", 16)
  last = max((n.start_time for n in ns.notes), default=0.0)
  return int((last + step / 2) // bar) + 1


def cut_bars(ns, start_bar: int, bars: int, converter):
  """Bars ``start_bar .. start_bar + bars - 1`` (1-based) of ``ns`` as a sequence from 0 s.

  A note belongs to the bar its onset quantizes into (an onset up to half a step
  early stays in the window, at 0 s); tempos, meters and chord symbols in force at
  the window's start move to 0 s.
  """
  if start_bar < 1:
    raise InputError(f"bars are numbered from 1, got start bar {start_bar}")
  bar = bar_seconds(ns, converter)
  half_step = bar / getattr(converter, "steps_per_bar", 16) / 2
  begin = (start_bar - 1) * bar
  lo = max(0.0, begin - half_step)
  out = sequences_lib.extract_subsequence(ns, lo, begin + bars * bar - half_step)
  shift = lo - begin  # -half_step, or 0 at the first bar
  for items in (out.tempos, out.time_signatures, out.key_signatures, out.text_annotations,
                out.control_changes, out.pitch_bends):
    for item in items:
      item.time = max(0.0, item.time + shift)
  for note in out.notes:
    note.start_time = max(0.0, note.start_time + shift)
    note.end_time = max(note.start_time + half_step, note.end_time + shift)
  out.total_time = bars * bar
  out.filename = ns.filename
  return out


@dataclasses.dataclass(frozen=True)
class Window:
  """A candidate window: its first bar (1-based), its length and its examples."""

  start_bar: int
  bars: int
  tensors: Any

  @property
  def label(self) -> str:
    return f"bars {self.start_bar}-{self.start_bar + self.bars - 1}"


def _is_groove(converter) -> bool:
  return type(converter).__name__ == "GrooveConverter"


def _groove_window(ns, converter, start_bar: int, bars: int):
  """GrooVAE window from the whole sequence's grid (as the converter cuts its windows:
  an onset played early into the window keeps its micro-timing), silence-padded."""
  whole = dataclasses.replace(converter, split_bars=None, hop_size=None,
                              max_note_dropout_probability=None)
  grid = _infer_tensors(ns, whole, "yields no drum grid")
  steps = bars * converter.steps_per_bar
  begin = (start_bar - 1) * converter.steps_per_bar
  cut = lambda a: np.pad(a[begin:begin + steps], ((0, max(0, begin + steps - len(a))),  # noqa: E731
                                                  (0, 0)))
  return converter_lib.ConverterTensors([cut(grid.inputs[0])], [cut(grid.outputs[0])],
                                        [cut(grid.controls[0])], [steps])


def candidate_windows(ns, converter) -> list[Window]:
  """Every window the converter's hop gives that yields an example, in bar order."""
  check_input(ns, converter)
  bars = window_bars(converter)
  if bars is None:
    return [Window(1, num_bars(ns, converter), _infer_tensors(ns, converter, "yields nothing"))]
  if _is_groove(converter):  # every window of the grid, as the converter's
    return [Window(start, bars, None) for start in
            range(1, num_bars(ns, converter) - bars + 2, window_hop_bars(converter))]
  out = []
  for start in range(1, num_bars(ns, converter) - bars + 2, window_hop_bars(converter)):
    try:
      tensors = converter.to_tensors(cut_bars(ns, start, bars, converter), "infer")
    except ValueError:
      continue
    if len(tensors):
      out.append(Window(start, bars, tensors))
  return out


def list_windows(windows: Sequence[Window], shown: int = 6) -> str:
  """``bars 1-2, 3-4, ..., 53-54``: one line, however many windows."""
  labels = [w.label.removeprefix("bars ") for w in windows]
  if len(labels) > shown + 1:
    labels = labels[:shown] + ["...", labels[-1]]
  return "bars " + ", ".join(labels)


def extract_window(ns, converter, start_bar: int):
  """The example of the window starting at bar ``start_bar`` (1-based) of ``ns``."""
  check_input(ns, converter)
  bars = window_bars(converter)
  if bars is None:
    raise InputError("this model takes whole sequences: --start_bar does not apply")
  total = num_bars(ns, converter)
  if start_bar < 1 or start_bar + bars - 1 > total:
    raise NoExtractedExamplesError(
        f"{_name(ns)} has {total} bars: a {bars}-bar window starts at bar 1 .. "
        f"{max(1, total - bars + 1)}, not {start_bar}")
  window = Window(start_bar, bars, None)
  if _is_groove(converter):
    return _groove_window(ns, converter, start_bar, bars)
  tensors = _infer_tensors(
      cut_bars(ns, start_bar, bars, converter), converter,
      f"{window.label} yield no example (e.g. rests, or notes outside the model's range)")
  if len(tensors) > 1:
    raise MultipleExtractedExamplesError(
        f"{_name(ns)} {window.label} hold {len(tensors)} melodies (instruments or "
        "voices); keep one in the file", tensors)
  return tensors


def extract_one(ns, converter, start_bar: int | None = None):
  """The single example of ``ns`` (Magenta's TrainedModel.encode contract), or of its
  window starting at bar ``start_bar`` (1-based)."""
  if start_bar is not None:
    return extract_window(ns, converter, start_bar)
  tensors = _infer_tensors(
      ns, converter,
      f"yields no example: the model needs one {converter_window_desc(converter)} "
      "window with 16 steps a bar (e.g. 4/4 or 2/2) and a single tempo; pass a longer "
      "clip, or a mode that runs over any length (reconstruct, humanize, drumify, infill, "
      "transfer)")
  if len(tensors) > 1:
    windows = candidate_windows(ns, converter)
    raise MultipleExtractedExamplesError(
        f"{_name(ns)} yields {len(windows) or len(tensors)} candidate "
        f"{converter_window_desc(converter)} windows"
        + (f" ({list_windows(windows)})" if windows else "")
        + "; pass --start_bar=N for the window from bar N", tensors)
  return tensors


def converter_window_desc(converter) -> str:
  bars = getattr(converter, "split_bars", None) or getattr(converter, "slice_bars", None)
  return f"{bars}-bar" if bars else "model-length"
