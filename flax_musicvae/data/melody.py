"""Monophonic melody representation (Magenta's ``OneHotMelodyConverter``).

A melody is one event per 16th-note step: ``NO_EVENT`` (-2, hold / silence continues),
``NOTE_OFF`` (-1) or a MIDI pitch (note-on). The one-hot classes are 0 = no event,
1 = note-off, 2.. = pitches ``min_pitch..max_pitch`` (90 classes for 21..108).

Extraction follows note_seq's ``Melody.from_quantized_sequence`` and Magenta's
``extract_melodies`` (min 1 bar, ``gap_bars`` of silence ends a melody, polyphony:
the highest of the notes starting on a step is kept, ``pad_end=True``), then
``slice_bars`` windows with a one-bar hop, de-duplication and per-sequence sampling.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import numpy as np
from note_seq import chords_lib as note_seq_chords
from note_seq.protobuf import music_pb2

from flax_musicvae.data import chords
from flax_musicvae.data import event_utils
from flax_musicvae.data.converter import Converter, ConverterTensors, Mode, sample_examples

NO_EVENT = -2
NOTE_OFF = -1
PIANO_MIN_PITCH = 21
PIANO_MAX_PITCH = 108
MEL_PROGRAMS = tuple(range(0, 32))  # piano, chromatic percussion, organ, guitar
OUTPUT_VELOCITY = 80
OUTPUT_QPM = 120.0
STANDARD_PPQ = 220


class PolyphonicMelodyError(Exception):
  """Two notes start on the same step and polyphony is not allowed."""


def set_melody_length(events: np.ndarray, length: int) -> np.ndarray:
  """``Melody.set_length`` on the right: truncate, or pad ending a sounding note."""
  if length <= len(events):
    return events[:length]
  out = np.full(length, NO_EVENT, np.int64)
  out[:len(events)] = events
  sounding = events[events != NO_EVENT]
  if len(sounding) and sounding[-1] >= 0:
    out[len(events)] = NOTE_OFF
  return out


def clean_leading(events: np.ndarray) -> np.ndarray:
  """Note-offs before the first note-on become no-events (as in ``Melody(events)``)."""
  on = np.flatnonzero(events >= 0)
  first = on[0] if len(on) else len(events)
  if not np.any(events[:first] == NOTE_OFF):
    return events
  out = events.copy()
  out[:first] = NO_EVENT
  return out


def _one_melody(start: np.ndarray, end: np.ndarray, pitch: np.ndarray, usable: np.ndarray,
                search_start: int, steps_per_bar: int, gap_steps: float,
                keep_highest: bool) -> event_utils.EventList | None:
  """The melody starting at the first note of one instrument's time-sorted notes."""
  origin = event_utils.bar_start(int(start[0]), search_start, steps_per_bar)
  ons, offs, pitches = [], [], []
  for s, e, p, ok in zip(start.tolist(), end.tolist(), pitch.tolist(), usable.tolist()):
    if not ok:
      continue
    s, e = s - origin, e - origin
    if ons:
      if s == ons[-1]:
        if keep_highest:
          continue  # notes are sorted by pitch descending within a step
        raise PolyphonicMelodyError(f"two notes start on step {s + origin}")
      if s - offs[-1] >= gap_steps:
        break
    ons.append(s)
    offs.append(e)
    pitches.append(p)
  if not ons:
    return None
  on, off = np.array(ons), np.array(offs)
  # Each note lasts until its end or the next note-on; the last note-off is dropped.
  events = np.full(off[-1], NO_EVENT, np.int64)
  events[on] = pitches
  ended = off[:-1] < on[1:]
  events[off[:-1][ended]] = NOTE_OFF
  return event_utils.EventList(events, origin)


def extract_melodies(notes: event_utils.NoteArrays, steps_per_bar: int,
                     gap_bars: float | None, max_steps: int | None,
                     keep_highest: bool = True, pad_end: bool = True
                     ) -> list[event_utils.EventList]:
  """Magenta's ``extract_melodies`` (min_bars=1, drums ignored; ``pad_end`` to a bar line)."""
  gap_steps = gap_bars * steps_per_bar if gap_bars else math.inf
  melodies = []
  for instrument in set(notes.instrument.tolist()):  # Magenta's iteration order
    track = notes.select(notes.instrument == instrument)
    order = np.argsort(track.start * 256 - track.pitch, kind="stable")
    track = track.select(order)
    usable = ~track.is_drum & (track.velocity > 0)
    search = 0
    while True:
      later = track.start >= search
      if not later.any():
        break
      try:
        melody = _one_melody(track.start[later], track.end[later], track.pitch[later],
                             usable[later], search, steps_per_bar, gap_steps,
                             keep_highest)
      except PolyphonicMelodyError:
        break
      if melody is None:
        break
      if pad_end:
        padded = event_utils.next_bar(len(melody.events), steps_per_bar)
        melody.events = set_melody_length(melody.events, padded)
        keep = event_utils.truncate_length(padded, max_steps, steps_per_bar)
      else:
        padded = len(melody.events)
        keep = padded if max_steps is None else min(padded, max_steps)
      search = event_utils.next_bar(melody.start_step + padded, steps_per_bar)
      melody.events = melody.events[:keep]
      melodies.append(melody)
  return melodies


def encode_melody(events: np.ndarray, min_pitch: int) -> np.ndarray:
  """Melody events -> class indices (0 no-event, 1 note-off, 2.. pitches)."""
  return np.where(events >= 0, events - min_pitch + 2, events + 2)


def decode_melody(classes: np.ndarray, min_pitch: int) -> np.ndarray:
  return np.where(classes >= 2, classes - 2 + min_pitch, classes - 2)


def melody_to_sequence(events: Sequence[int], steps_per_quarter: int,
                       velocity: int = OUTPUT_VELOCITY, qpm: float = OUTPUT_QPM,
                       instrument: int = 0, program: int = 0) -> music_pb2.NoteSequence:
  """``Melody.to_sequence`` for a melody starting at step 0."""
  step_time = 60.0 / qpm / steps_per_quarter
  ns = music_pb2.NoteSequence(ticks_per_quarter=STANDARD_PPQ)
  ns.tempos.add(qpm=qpm)
  note = None
  for step, event in enumerate(events):
    if event >= 0 or event == NOTE_OFF:
      if note is not None:
        note.end_time = step * step_time
        note = None
    if event >= 0:
      note = ns.notes.add(pitch=int(event), velocity=velocity, instrument=instrument,
                          program=program, start_time=step * step_time)
  if note is not None:
    note.end_time = len(events) * step_time
  if ns.notes:
    ns.total_time = ns.notes[-1].end_time
  return ns


@dataclasses.dataclass(frozen=True)
class OneHotMelodyConverter(Converter):
  """Melodies as one-hot sequences, optionally with per-step triad chord controls.

  ``chord_encoding='triad'`` adds 49-d chord controls (inferred when absent).
  Magenta's ``condition_on_key`` (unused by every config) is not supported.
  """

  min_pitch: int = PIANO_MIN_PITCH
  max_pitch: int = PIANO_MAX_PITCH
  valid_programs: tuple[int, ...] | None = None
  skip_polyphony: bool = False
  max_bars: int | None = None
  slice_bars: int | None = None
  gap_bars: float | None = 1.0
  steps_per_quarter: int = 4
  quarters_per_bar: int = 4
  add_end_token: bool = False
  pad_to_total_time: bool = False
  max_tensors_per_notesequence: int | None = 5
  presplit_on_time_changes: bool = True
  chord_encoding: str | None = None
  dedupe_event_lists: bool = True

  def __post_init__(self):
    if not 0 <= self.min_pitch <= self.max_pitch <= 127:
      raise ValueError(f"need 0 <= min_pitch <= max_pitch <= 127, got "
                       f"{self.min_pitch}, {self.max_pitch}")
    if self.chord_encoding not in (None, "triad"):
      raise ValueError(f"chord_encoding must be None or 'triad', got {self.chord_encoding!r}")
    if self.valid_programs is not None:
      object.__setattr__(self, "valid_programs", tuple(self.valid_programs))

  @property
  def num_classes(self) -> int:
    return self.max_pitch - self.min_pitch + 3

  @property
  def input_depth(self) -> int:
    return self.num_classes + self.add_end_token

  @property
  def output_depth(self) -> int:
    return self.input_depth

  @property
  def control_depth(self) -> int:
    return chords.NUM_TRIAD_CLASSES if self.chord_encoding else 0

  @property
  def end_token(self) -> int | None:
    return self.num_classes if self.add_end_token else None

  @property
  def steps_per_bar(self) -> int:
    return self.steps_per_quarter * self.quarters_per_bar

  def _filtered(self, ns: music_pb2.NoteSequence) -> music_pb2.NoteSequence:
    """Copy of ``ns`` keeping the notes in the pitch range and valid programs."""
    out = music_pb2.NoteSequence()
    out.CopyFrom(ns)
    del out.notes[:]
    out.notes.extend(
        n for n in ns.notes
        if self.min_pitch <= n.pitch <= self.max_pitch
        and (self.valid_programs is None or n.program in self.valid_programs))
    return out

  def melodies(self, qns: music_pb2.NoteSequence) -> list[event_utils.EventList]:
    """Extracted melodies of a quantized (already filtered) sequence, padded if asked."""
    spb = self.steps_per_bar
    melodies = extract_melodies(
        event_utils.NoteArrays.from_sequence(qns), spb, self.gap_bars,
        spb * self.max_bars if self.max_bars else None,
        keep_highest=not self.skip_polyphony)
    if self.pad_to_total_time:
      for m in melodies:
        left = np.full(m.start_step, NO_EVENT, np.int64)
        m.events = set_melody_length(np.concatenate([left, m.events]),
                                     qns.total_quantized_steps)
        m.start_step = 0
    return melodies

  def _windows(self, melodies: list[event_utils.EventList]) -> list[event_utils.EventList]:
    if self.slice_bars is None:
      return melodies
    slice_steps = self.slice_bars * self.steps_per_bar
    return [event_utils.EventList(clean_leading(m.events[b:e]), m.start_step + b)
            for m in melodies
            for b, e in event_utils.window_bounds(len(m.events), slice_steps,
                                                  self.steps_per_bar)]

  def _to_tensors(self, ns: music_pb2.NoteSequence, mode: Mode,
                  rng: np.random.Generator | None) -> ConverterTensors:
    qns = event_utils.quantize(self._filtered(ns), self.steps_per_quarter,
                               self.steps_per_bar)
    if qns is None:
      return ConverterTensors()
    if self.chord_encoding and not chords.infer_chords_if_missing(qns):
      return ConverterTensors()
    windows = self._windows(self.melodies(qns))
    chord_ids = None
    if self.chord_encoding:
      try:
        step_ids, figures = chords.chords_per_step(qns)
      except chords.CoincidentChordsError:
        return ConverterTensors()
      classes = chords.figure_classes(figures)
      chord_ids = [chords.window_chords(step_ids, w.start_step, len(w.events))
                   for w in windows]
      keys = [tuple(zip(w.events.tolist(), c.tolist())) for w, c in zip(windows, chord_ids)]
    else:
      keys = [tuple(zip(w.events.tolist())) for w in windows]
    order = (event_utils.set_order(keys) if self.dedupe_event_lists
             else range(len(windows)))
    tensors = ConverterTensors()
    for i in order:
      seq = self._encode(windows[i].events)
      controls = (np.zeros((len(seq), 0), np.float32) if chord_ids is None
                  else self._chord_controls(classes[chord_ids[i]]))
      tensors.extend(ConverterTensors([seq], [seq], [controls], [len(seq)]))
    tensors = sample_examples(tensors, self.max_tensors_per_notesequence, mode, rng)
    if any(c is None for c in tensors.controls):
      return ConverterTensors()  # Magenta drops the sequence on an unencodable chord
    return tensors

  def _encode(self, events: np.ndarray) -> np.ndarray:
    classes = encode_melody(events, self.min_pitch)
    if self.add_end_token:
      classes = np.append(classes, self.end_token)
    return event_utils.one_hot(classes, self.output_depth)

  def _chord_controls(self, classes: np.ndarray) -> np.ndarray | None:
    """One-hot chord per step (the last one repeated for the end token); None if invalid."""
    if self.add_end_token:
      classes = np.append(classes, classes[-1] if len(classes) else 0)
    if np.any(classes < 0):
      return None
    return event_utils.one_hot(classes, chords.NUM_TRIAD_CLASSES)

  def decode_events(self, sample: np.ndarray) -> np.ndarray:
    """Model output ``[steps, depth]`` -> melody events, cut at the first end token."""
    classes = np.argmax(sample, axis=-1)
    if self.end_token is not None:
      ends = np.flatnonzero(classes == self.end_token)
      if len(ends):
        classes = classes[:ends[0]]
    return decode_melody(classes, self.min_pitch)

  def from_tensors(self, samples: Sequence[np.ndarray],
                   controls: Sequence[np.ndarray] | None = None
                   ) -> list[music_pb2.NoteSequence]:
    out = []
    step_time = 60.0 / OUTPUT_QPM / self.steps_per_quarter
    for i, sample in enumerate(samples):
      events = self.decode_events(sample)
      ns = melody_to_sequence(events, self.steps_per_quarter)
      if self.chord_encoding and controls is not None:
        figures = chords.decode_chords(controls[i])[:len(events)]
        note_seq_chords.add_chords_to_sequence(
            ns, figures, [step * step_time for step in range(len(figures))])
      out.append(ns)
    return out
