"""User inputs: MIDI files as NoteSequences, the checks that explain unusable ones
(``InputError``), tempo changes."""

from __future__ import annotations

import os
import pathlib

import note_seq
import numpy as np

from flax_musicvae.inference.loading import PathLike


class InputError(ValueError):
  """A user input the model cannot use; the message says what to do."""


class NoExtractedExamplesError(InputError):
  """An input yields no example of the model's representation."""


class MultipleExtractedExamplesError(InputError):
  """An input yields several examples (windows) where exactly one is needed.

  ``candidates`` holds the extracted examples (``ConverterTensors``).
  """

  def __init__(self, message: str, candidates=None):
    super().__init__(message)
    self.candidates = candidates


def parse_midi(data: bytes, name: str):
  """A NoteSequence from the bytes of a Standard MIDI file ``name``, or a clear InputError."""
  if not data:
    raise InputError(f"{name}: the file is empty; use a Standard MIDI file (.mid)")
  if not data.startswith(b"MThd"):
    raise InputError(f"{name}: not a MIDI file (no 'MThd' header); use a Standard MIDI "
                     "file (.mid), e.g. exported from your DAW")
  try:
    ns = note_seq.midi_to_note_sequence(data)
  except Exception as e:  # pylint: disable=broad-except  # mido/pretty_midi raise anything
    raise InputError(f"{name}: cannot parse the MIDI file ({type(e).__name__}: "
                     f"{str(e)[:200]})") from e
  ns.filename = name
  return ns


def read_midi(path: PathLike):
  """A NoteSequence from a MIDI file, with a clear error for anything else."""
  path = pathlib.Path(path)
  if not path.is_file():
    raise InputError(f"{path}: no such file")
  return parse_midi(path.read_bytes(), str(path))


def as_note_sequence(item):
  return read_midi(item) if isinstance(item, (str, os.PathLike)) else item


def _name(ns) -> str:
  return ns.filename or "the input sequence"


def check_input(ns, converter) -> None:
  """Raises ``InputError`` for inputs no example can come from, saying why.

  Any meter whose bar is the model's bar length is accepted (Magenta's rule: 16 steps
  per bar at 4 steps per quarter, so 4/4, 2/2 and 8/8, not 3/4 or 6/8).
  """
  if not ns.notes:
    raise NoExtractedExamplesError(f"{_name(ns)} has no notes")
  want = getattr(converter, "steps_per_bar", 16)
  per_quarter = getattr(converter, "steps_per_quarter", 4)
  for ts in ns.time_signatures:
    steps = per_quarter * 4 * ts.numerator / ts.denominator if ts.denominator else 0
    if steps != want:
      raise NoExtractedExamplesError(
          f"{_name(ns)} is in {ts.numerator}/{ts.denominator} time at {ts.time:.2f}s: "
          f"{steps:g} steps per bar, but this model's bars have {want} (e.g. 4/4 or 2/2): "
          f"re-export the clip in a meter of {want // per_quarter} quarter notes a bar")
  drums_only = type(converter).__name__ in ("GrooveConverter", "DrumsConverter")
  if drums_only and not any(n.is_drum for n in ns.notes):
    raise NoExtractedExamplesError(
        f"{_name(ns)} has no drum notes (MIDI channel 10) but this is a drum model: pass a "
        "drum track, or use drumify for a non-drum rhythm")
  if not drums_only and all(n.is_drum for n in ns.notes):
    raise NoExtractedExamplesError(
        f"{_name(ns)} only has drum notes but this model needs pitched instruments")


def _infer_tensors(ns, converter, no_example: str):
  """Infer-mode tensors of ``ns``; user-facing errors when it yields nothing."""
  check_input(ns, converter)
  try:
    tensors = converter.to_tensors(ns, "infer")
  except ValueError as e:
    raise NoExtractedExamplesError(f"{_name(ns)}: {e}") from e
  if not len(tensors):
    raise NoExtractedExamplesError(f"{_name(ns)} {no_example}")
  return tensors


def _per_input(start_bars, n: int) -> list:
  """``start_bars`` (None, one bar for all, or one per input) as a list of ``n``."""
  if start_bars is None or isinstance(start_bars, (int, np.integer)):
    return [start_bars] * n
  start_bars = list(start_bars)
  if len(start_bars) == 1:
    return start_bars * n
  if len(start_bars) != n:
    raise InputError(f"{len(start_bars)} start bars for {n} inputs: give one for all or "
                     "one per input")
  return start_bars


def set_qpm(ns, qpm: float):
  """``ns`` played at ``qpm`` (same bars and steps; times scaled, one tempo)."""
  if qpm <= 0:
    raise InputError(f"qpm must be > 0, got {qpm}")
  scale = (ns.tempos[0].qpm if ns.tempos else 120.0) / qpm
  for note in ns.notes:
    note.start_time *= scale
    note.end_time *= scale
  for items in (ns.time_signatures, ns.key_signatures, ns.text_annotations,
                ns.control_changes, ns.pitch_bends):
    for item in items:
      item.time *= scale
  del ns.tempos[:]
  ns.tempos.add(qpm=qpm)
  ns.total_time *= scale
  return ns
