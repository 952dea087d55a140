"""Helpers shared by the event-list converters (melody, drums, trio).

These mirror the parts of Magenta's ``LegacyEventListOneHotConverter`` and
``DrumsConverter`` that are common: quantization with the same failure rules,
note fields as numpy arrays, sliding windows with a one-bar hop, and de-duplication
that keeps Magenta's example order (the iteration order of a Python ``set`` of the
same keys, which is deterministic for tuples of ints / frozensets of ints).
"""

from __future__ import annotations

import dataclasses
from typing import Hashable, Sequence

import note_seq
import numpy as np
from note_seq import sequences_lib
from note_seq.protobuf import music_pb2

_QUANTIZE_ERRORS = (note_seq.BadTimeSignatureError,
                    note_seq.NonIntegerStepsPerBarError,
                    note_seq.NegativeTimeError)


def quantize(ns: music_pb2.NoteSequence, steps_per_quarter: int,
             steps_per_bar: int) -> music_pb2.NoteSequence | None:
  """Quantized copy of ``ns``, or None where Magenta's converters yield nothing.

  None when the bar length (from the first time signature) is not ``steps_per_bar``
  steps or when note_seq rejects the time signature / negative times.
  """
  try:
    qns = sequences_lib.quantize_note_sequence(ns, steps_per_quarter)
    if sequences_lib.steps_per_bar_in_quantized_sequence(qns) != steps_per_bar:
      return None
  except _QUANTIZE_ERRORS:
    return None
  return qns


@dataclasses.dataclass(frozen=True)
class NoteArrays:
  """Fields of a quantized NoteSequence's notes, one array entry per note."""

  start: np.ndarray
  end: np.ndarray
  pitch: np.ndarray
  velocity: np.ndarray
  instrument: np.ndarray
  program: np.ndarray
  is_drum: np.ndarray

  @classmethod
  def from_sequence(cls, qns: music_pb2.NoteSequence) -> "NoteArrays":
    notes = qns.notes
    return cls(
        start=np.array([n.quantized_start_step for n in notes], np.int64),
        end=np.array([n.quantized_end_step for n in notes], np.int64),
        pitch=np.array([n.pitch for n in notes], np.int64),
        velocity=np.array([n.velocity for n in notes], np.int64),
        instrument=np.array([n.instrument for n in notes], np.int64),
        program=np.array([n.program for n in notes], np.int64),
        is_drum=np.array([n.is_drum for n in notes], bool))

  def select(self, mask: np.ndarray) -> "NoteArrays":
    return NoteArrays(**{f.name: getattr(self, f.name)[mask]
                         for f in dataclasses.fields(self)})


@dataclasses.dataclass
class EventList:
  """A track of per-step events (melody ints or drum bit masks) from ``start_step``."""

  events: np.ndarray
  start_step: int


def bar_start(step: int, search_start: int, steps_per_bar: int) -> int:
  """The bar line (counted from ``search_start``) at or before ``step``."""
  return step - (step - search_start) % steps_per_bar


def next_bar(step: int, steps_per_bar: int) -> int:
  """``step`` rounded up to a bar line (Magenta's next search start)."""
  return step + (-step) % steps_per_bar


def truncate_length(length: int, max_steps: int | None, steps_per_bar: int) -> int:
  """Length after Magenta's ``max_steps_truncate`` (with ``pad_end=True``)."""
  if max_steps is None or length <= max_steps:
    return length
  return max_steps - max_steps % steps_per_bar


def window_bounds(length: int, slice_steps: int | None,
                  steps_per_bar: int) -> list[tuple[int, int]]:
  """(begin, end) of every ``slice_steps`` window with a one-bar hop; whole list if None."""
  if slice_steps is None:
    return [(0, length)]
  return [(i - slice_steps, i)
          for i in range(slice_steps, length + 1, steps_per_bar)]


def set_order(keys: Sequence[Hashable]) -> list[int]:
  """Indices of the distinct ``keys`` in the order ``list(set(keys))`` gives them.

  Magenta de-duplicates windows with ``list(set(...))``; for keys built from ints
  and frozensets of ints this order is deterministic, so eval-mode prefixes match.
  """
  first = {}
  for i, key in enumerate(keys):
    first.setdefault(key, i)
  return [first[key] for key in set(keys)]


def one_hot(indices: np.ndarray, depth: int) -> np.ndarray:
  out = np.zeros((len(indices), depth), np.float32)
  out[np.arange(len(indices)), indices] = 1.0
  return out
