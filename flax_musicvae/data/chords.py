"""Triad chord controls (Magenta's ``TriadChordOneHotEncoding`` as per-step one-hots).

49 classes: 0 = no chord (``N.C.``), 1-12 major, 13-24 minor, 25-36 augmented,
37-48 diminished, each block ordered by root C, C#, ..., B. A chord symbol whose
triad is none of these cannot be encoded (Magenta then drops the example).
"""

from __future__ import annotations

import functools

import note_seq
import numpy as np
from note_seq import chord_symbols_lib
from note_seq.protobuf import music_pb2

NO_CHORD = note_seq.NO_CHORD
NUM_TRIAD_CLASSES = 49
_CHORD_SYMBOL = music_pb2.NoteSequence.TextAnnotation.CHORD_SYMBOL
_QUALITIES = (chord_symbols_lib.CHORD_QUALITY_MAJOR,
              chord_symbols_lib.CHORD_QUALITY_MINOR,
              chord_symbols_lib.CHORD_QUALITY_AUGMENTED,
              chord_symbols_lib.CHORD_QUALITY_DIMINISHED)
_SUFFIXES = ("", "m", "aug", "dim")
_ROOT_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")


class ChordEncodingError(ValueError):
  """A chord symbol that is not a major, minor, augmented or diminished triad."""


@functools.lru_cache(maxsize=4096)
def triad_class(figure: str) -> int:
  """Class index of a chord symbol figure (``'N.C.'`` -> 0)."""
  if figure == NO_CHORD:
    return 0
  try:
    root = chord_symbols_lib.chord_symbol_root(figure)
    quality = chord_symbols_lib.chord_symbol_quality(figure)
  except chord_symbols_lib.ChordSymbolError as e:
    raise ChordEncodingError(f"cannot parse chord symbol {figure!r}") from e
  if quality not in _QUALITIES:
    raise ChordEncodingError(f"chord is not a standard triad: {figure!r}")
  return 1 + 12 * _QUALITIES.index(quality) + root


def triad_figure(index: int) -> str:
  """Chord symbol of a class index (the inverse of ``triad_class`` on triads)."""
  if not 0 <= index < NUM_TRIAD_CLASSES:
    raise ValueError(f"triad chord class must be in [0, {NUM_TRIAD_CLASSES}), got {index}")
  if index == 0:
    return NO_CHORD
  quality, root = divmod(index - 1, 12)
  return _ROOT_NAMES[root] + _SUFFIXES[quality]


def has_chords(ns: music_pb2.NoteSequence) -> bool:
  return any(ta.annotation_type == _CHORD_SYMBOL for ta in ns.text_annotations)


def infer_chords_if_missing(qns: music_pb2.NoteSequence) -> bool:
  """Adds inferred chords to a quantized sequence without any; False if inference fails."""
  if has_chords(qns):
    return True
  try:
    note_seq.infer_chords_for_sequence(qns)
  except note_seq.ChordInferenceError:
    return False
  return True


class CoincidentChordsError(ValueError):
  """Two different chord symbols start on the same step."""


def chords_per_step(qns: music_pb2.NoteSequence) -> tuple[np.ndarray, list[str]]:
  """The chord active at every step of ``qns`` (``ChordProgression`` semantics).

  Returns ``(ids, figures)``: ``ids[step]`` indexes ``figures`` (``figures[0]`` is
  ``N.C.``, active before the first chord) for steps ``0 .. total_quantized_steps-1``.
  """
  total = qns.total_quantized_steps
  annotations = sorted((ta for ta in qns.text_annotations
                        if ta.annotation_type == _CHORD_SYMBOL
                        and ta.quantized_step < total),
                       key=lambda ta: ta.quantized_step)
  figures = [NO_CHORD]
  steps, ids = [], []
  for ta in annotations:
    if steps and ta.quantized_step == steps[-1]:
      if ta.text != figures[ids[-1]]:
        raise CoincidentChordsError(
            f"chords {figures[ids[-1]]!r} and {ta.text!r} both start at step {steps[-1]}")
      continue
    if ta.text not in figures:
      figures.append(ta.text)
    steps.append(ta.quantized_step)
    ids.append(figures.index(ta.text))
  which = np.searchsorted(np.array(steps, np.int64), np.arange(total), side="right") - 1
  step_ids = np.where(which >= 0, np.array([0] + ids)[which + 1], 0)
  return step_ids.astype(np.int64), figures


def window_chords(step_ids: np.ndarray, start: int, length: int) -> np.ndarray:
  """Chord ids at steps ``start .. start+length-1``; past the end the last chord holds."""
  if not len(step_ids):
    return np.zeros(length, np.int64)
  return step_ids[np.minimum(np.arange(start, start + length), len(step_ids) - 1)]


def figure_classes(figures: list[str]) -> np.ndarray:
  """Triad class of each figure, -1 where the figure cannot be encoded."""
  out = []
  for figure in figures:
    try:
      out.append(triad_class(figure))
    except ChordEncodingError:
      out.append(-1)
  return np.array(out, np.int64)


def decode_chords(controls: np.ndarray) -> list[str]:
  """Per-step chord figures of a ``[steps, >=49]`` control array (argmax of the first 49)."""
  return [triad_figure(int(i))
          for i in np.argmax(controls[:, :NUM_TRIAD_CLASSES], axis=-1)]
