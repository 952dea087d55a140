"""The reference path: tfds' windowing (pretty_midi) read back with note_seq, as Magenta
trains on it; slow."""

from __future__ import annotations

import copy
import io
from typing import Iterator

import note_seq
from note_seq import sequences_lib
import numpy as np
import pretty_midi

from flax_musicvae.data.converter import Mode
from flax_musicvae.data.groove import GrooveConverter
from flax_musicvae.pipelines.groove.examples import FileExamples, _convert
from flax_musicvae.pipelines.groove.sources import _bar_seconds


def tfds_window_midis(midi: bytes, row: dict, split_bars: int) -> Iterator[bytes]:
  """The MIDI bytes of each tfds ``groove/<split_bars>bar`` window (pretty_midi)."""
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
  out = FileExamples(used_reference=True)
  for i, window in enumerate(tfds_window_midis(midi, row, split_bars)):
    meter_ok, notes = _reference_notes(note_seq.midi_to_note_sequence(window), converter)
    out.add(i, *_convert(converter, meter_ok, notes, Mode(mode), rng))
  return out
