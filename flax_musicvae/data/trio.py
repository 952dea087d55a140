"""Melody + bass + drums trios (Magenta's ``TrioConverter``).

Instruments are typed by program (melody 0-31, bass 32-39) or ``is_drum``; an
instrument whose notes disagree on the type is ignored. Each instrument is encoded
over the whole sequence (melody one-hot 90, drums one-hot 512), bar coverage is
filled over gaps of up to ``gap_bars`` bars, and every ``slice_bars`` window (one-bar
hop) fully covered by a (melody, bass, drums) combination becomes an example
``[90 | 90 | 512] = 692`` per step. Sequences lacking one of the three types give none.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import itertools
from typing import Sequence

import numpy as np
from note_seq.protobuf import music_pb2

from flax_musicvae.data import chords
from flax_musicvae.data import event_utils
from flax_musicvae.data.converter import Converter, ConverterTensors, Mode, sample_examples
from flax_musicvae.data.drums import DrumsConverter
from flax_musicvae.data.melody import MEL_PROGRAMS, OneHotMelodyConverter

BASS_PROGRAMS = tuple(range(32, 40))
ELECTRIC_BASS_PROGRAM = 33
MAX_INSTRUMENT_NUMBER = 127
DEFAULT_QPM = 120.0  # note_seq's tempo when a sequence has none
_CHORD_SYMBOL = music_pb2.NoteSequence.TextAnnotation.CHORD_SYMBOL


class InstrumentType(enum.IntEnum):
  UNK = 0
  MEL = 1
  BASS = 2
  DRUMS = 3
  INVALID = 4


def _program_types() -> np.ndarray:
  types = np.full(128, InstrumentType.INVALID, np.int64)
  types[list(MEL_PROGRAMS)] = InstrumentType.MEL
  types[list(BASS_PROGRAMS)] = InstrumentType.BASS
  return types


_PROGRAM_TYPES = _program_types()


def _only_instrument(ns: music_pb2.NoteSequence, instrument: int) -> music_pb2.NoteSequence:
  out = music_pb2.NoteSequence()
  out.CopyFrom(ns)
  del out.notes[:]
  out.notes.extend(n for n in ns.notes if n.instrument == instrument)
  return out


def instrument_types(notes: event_utils.NoteArrays) -> np.ndarray:
  """Type of each instrument number 0..127 (UNK if unused, INVALID if mixed)."""
  types = np.full(MAX_INSTRUMENT_NUMBER + 1, InstrumentType.UNK, np.int64)
  note_types = np.where(notes.is_drum, InstrumentType.DRUMS,
                        _PROGRAM_TYPES[notes.program])
  for i in np.unique(notes.instrument):
    seen = np.unique(note_types[notes.instrument == i])
    types[i] = seen[0] if len(seen) == 1 else InstrumentType.INVALID
  return types


@dataclasses.dataclass(frozen=True)
class TrioConverter(Converter):
  """Three-part (melody, bass, drums) multi-one-hot windows."""

  slice_bars: int = 16
  gap_bars: int = 2
  max_bars: int = 1024
  steps_per_quarter: int = 4
  quarters_per_bar: int = 4
  max_tensors_per_notesequence: int | None = 5
  chord_encoding: str | None = None
  presplit_on_time_changes: bool = True

  def __post_init__(self):
    if self.slice_bars < 1 or self.gap_bars < 0:
      raise ValueError(f"need slice_bars >= 1 and gap_bars >= 0, got "
                       f"{self.slice_bars}, {self.gap_bars}")

  @functools.cached_property
  def melody_converter(self) -> OneHotMelodyConverter:
    return OneHotMelodyConverter(
        gap_bars=None, steps_per_quarter=self.steps_per_quarter,
        quarters_per_bar=self.quarters_per_bar, pad_to_total_time=True,
        presplit_on_time_changes=False, max_tensors_per_notesequence=None,
        chord_encoding=self.chord_encoding)

  @functools.cached_property
  def drums_converter(self) -> DrumsConverter:
    return DrumsConverter(
        gap_bars=None, steps_per_quarter=self.steps_per_quarter,
        quarters_per_bar=self.quarters_per_bar, pad_to_total_time=True,
        presplit_on_time_changes=False, max_tensors_per_notesequence=None)

  @property
  def split_depths(self) -> tuple[int, int, int]:
    mel = self.melody_converter.output_depth
    return mel, mel, self.drums_converter.output_depth

  @property
  def input_depth(self) -> int:
    return sum(self.split_depths)

  @property
  def output_depth(self) -> int:
    return self.input_depth

  @property
  def control_depth(self) -> int:
    return self.melody_converter.control_depth

  @property
  def steps_per_bar(self) -> int:
    return self.steps_per_quarter * self.quarters_per_bar

  def _coverage(self, notes: event_utils.NoteArrays, total_bars: int) -> np.ndarray:
    """``[total_bars, 128]``: bars touched by each instrument's notes."""
    coverage = np.zeros((total_bars, MAX_INSTRUMENT_NUMBER + 1), bool)
    start_bar = notes.start // self.steps_per_bar
    end_bar = np.minimum(-(-notes.end // self.steps_per_bar), total_bars)
    for s, e, i in zip(start_bar.tolist(), end_bar.tolist(), notes.instrument.tolist()):
      coverage[s:e, i] = True
    return coverage

  def _encode_instruments(self, ns: music_pb2.NoteSequence, by_type: dict
                          ) -> tuple[dict[int, np.ndarray], np.ndarray | None]:
    """Whole-sequence encoding of each instrument (missing if it yields nothing)."""
    encoded, controls = {}, None
    for i in by_type[InstrumentType.MEL] + by_type[InstrumentType.BASS]:
      tensors = self.melody_converter.to_tensors(_only_instrument(ns, i), Mode.EVAL)
      if len(tensors):
        encoded[i] = tensors.outputs[0]
        if controls is None:
          controls = tensors.controls[0]
    for i in by_type[InstrumentType.DRUMS]:
      tensors = self.drums_converter.to_tensors(_only_instrument(ns, i), Mode.EVAL)
      if len(tensors):
        encoded[i] = tensors.outputs[0]
    return encoded, controls

  def _to_tensors(self, ns: music_pb2.NoteSequence, mode: Mode,
                  rng: np.random.Generator | None) -> ConverterTensors:
    qns = event_utils.quantize(ns, self.steps_per_quarter, self.steps_per_bar)
    if qns is None:
      return ConverterTensors()
    ns = music_pb2.NoteSequence.FromString(ns.SerializeToString())
    if self.chord_encoding and not chords.has_chords(qns):
      if not chords.infer_chords_if_missing(qns):
        return ConverterTensors()
      # Parts are re-extracted from the unquantized sequence: copy the chords back.
      ns.text_annotations.extend(
          music_pb2.NoteSequence.TextAnnotation(
              annotation_type=_CHORD_SYMBOL, time=ta.time, text=ta.text)
          for ta in qns.text_annotations if ta.annotation_type == _CHORD_SYMBOL)
    total_bars = min(-(-qns.total_quantized_steps // self.steps_per_bar), self.max_bars)
    notes = event_utils.NoteArrays.from_sequence(qns)
    notes = notes.select(notes.instrument <= MAX_INSTRUMENT_NUMBER)
    types = instrument_types(notes)
    by_type = {t: np.flatnonzero(types == t).tolist()
               for t in (InstrumentType.MEL, InstrumentType.BASS, InstrumentType.DRUMS)}
    if not all(by_type.values()):
      return ConverterTensors()
    coverage = self._coverage(notes.select(notes.start // self.steps_per_bar < total_bars),
                              total_bars)
    qpm = ns.tempos[0].qpm if ns.tempos else DEFAULT_QPM
    ns.total_time = total_bars * self.steps_per_bar * 60 / qpm / self.steps_per_quarter
    encoded, controls = self._encode_instruments(ns, by_type)
    coverage[:, [i for i in range(coverage.shape[1]) if i not in encoded]] = False
    filled = np.stack([coverage[max(0, j - self.gap_bars):j + self.gap_bars + 1].any(axis=0)
                       for j in range(total_bars)]) if total_bars else coverage
    return sample_examples(
        self._windows(filled, encoded, controls, by_type, total_bars),
        self.max_tensors_per_notesequence, mode, rng)

  def _windows(self, coverage: np.ndarray, encoded: dict[int, np.ndarray],
               controls: np.ndarray | None, by_type: dict, total_bars: int
               ) -> ConverterTensors:
    """Every fully covered window of every (melody, bass, drums) combination."""
    out = ConverterTensors()
    gap, spb = self.gap_bars, self.steps_per_bar
    for group in itertools.product(by_type[InstrumentType.MEL], by_type[InstrumentType.BASS],
                                   by_type[InstrumentType.DRUMS]):
      if not all(i in encoded for i in group):
        continue
      covered = coverage[:, group].all(axis=1)
      # Near either end, one covered instrument counts for all (Magenta's leniency).
      covered[:gap] = coverage[:gap, group].any()
      covered[-gap:] = coverage[-gap:, group].any()
      for j in range(total_bars - self.slice_bars + 1):
        if not covered[j:j + self.slice_bars].all():
          continue
        steps = slice(j * spb, (j + self.slice_bars) * spb)
        seq = np.concatenate([encoded[i][steps] for i in group], axis=-1)
        ctrl = (controls[steps] if controls is not None
                else np.zeros((len(seq), 0), np.float32))
        out.extend(ConverterTensors([seq], [seq], [ctrl], [len(seq)]))
    return out

  def from_tensors(self, samples: Sequence[np.ndarray],
                   controls: Sequence[np.ndarray] | None = None
                   ) -> list[music_pb2.NoteSequence]:
    mel_depth, bass_depth, _ = self.split_depths
    out = []
    for i, s in enumerate(samples):
      mel = self.melody_converter.from_tensors(
          [s[:, :mel_depth]], None if controls is None else [controls[i]])[0]
      bass = self.melody_converter.from_tensors(
          [s[:, mel_depth:mel_depth + bass_depth]])[0]
      drums = self.drums_converter.from_tensors([s[:, mel_depth + bass_depth:]])[0]
      for n in bass.notes:
        n.instrument = 1
        n.program = ELECTRIC_BASS_PROGRAM
      mel.notes.extend(bass.notes)
      mel.notes.extend(drums.notes)
      mel.total_time = max(mel.total_time, bass.total_time, drums.total_time)
      out.append(mel)
    return out
