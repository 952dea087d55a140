"""Drum tracks (Magenta's ``DrumsConverter``).

Drum pitches are grouped into classes (REDUCED: note_seq's 9 default drum types,
FULL: 61 single General MIDI pitches). A step's event is the set of classes hit,
stored as a bit mask (bit i = class i). Outputs are either the one-hot of the mask
(2^9 = 512 classes, index = sum of 2^i) or the multi-label roll; ``roll_input`` feeds
the encoder the roll plus a final "NOR" bit that is 1 on steps without any hit.

Extraction follows note_seq's ``DrumTrack.from_quantized_sequence`` and Magenta's
``extract_drum_tracks`` (drums of all instruments together, min 1 bar, ``gap_bars``
of silence after a hit ends a track, ``pad_end=True``).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Sequence

import numpy as np
from note_seq import drums_encoder_decoder
from note_seq.protobuf import music_pb2

from flax_musicvae.data import event_utils
from flax_musicvae.data.converter import Converter, ConverterTensors, Mode, sample_examples

REDUCED_DRUM_PITCH_CLASSES = tuple(
    tuple(p) for p in drums_encoder_decoder.DEFAULT_DRUM_TYPE_PITCHES)
FULL_DRUM_PITCH_CLASSES = tuple((p,) for p in (
    36, 35, 38, 27, 28, 31, 32, 33, 34, 37, 39, 40, 56, 65, 66, 75, 85, 42, 44,
    54, 68, 69, 70, 71, 73, 78, 80, 46, 67, 72, 74, 79, 81, 45, 29, 41, 61, 64,
    84, 48, 47, 60, 63, 77, 86, 87, 50, 30, 43, 62, 76, 83, 49, 55, 57, 58, 51,
    52, 53, 59, 82))
OUTPUT_VELOCITY = 80
OUTPUT_QPM = 120.0
STANDARD_PPQ = 220
DRUM_INSTRUMENT = 9
_MAX_ONE_HOT_CLASSES = 16  # a one-hot over 2^classes events must stay small


def pitch_class_table(pitch_classes: Sequence[Sequence[int]]) -> np.ndarray:
  """Class of every MIDI pitch (-1 = not a drum of any class; later classes win)."""
  table = np.full(128, -1, np.int64)
  for i, pitches in enumerate(pitch_classes):
    table[list(pitches)] = i
  return table


def _one_track(steps: np.ndarray, masks: np.ndarray, search_start: int,
               steps_per_bar: int, gap_steps: float) -> event_utils.EventList:
  """The drum track starting at the first of the (sorted, distinct) hit steps."""
  origin = event_utils.bar_start(int(steps[0]), search_start, steps_per_bar)
  index = steps - origin
  gaps = np.flatnonzero(index[1:] - index[:-1] - 1 >= gap_steps)
  count = gaps[0] + 1 if len(gaps) else len(index)
  events = np.zeros(index[count - 1] + 1, np.int64)
  events[index[:count]] = masks[:count]
  return event_utils.EventList(events, origin)


def extract_drum_tracks(step: np.ndarray, drum_class: np.ndarray, steps_per_bar: int,
                        gap_bars: float | None,
                        max_steps: int | None, pad_end: bool = True
                        ) -> list[event_utils.EventList]:
  """Magenta's ``extract_drum_tracks`` (min_bars=1; ``pad_end`` to a bar line) on hits."""
  gap_steps = gap_bars * steps_per_bar if gap_bars else math.inf
  steps, inverse = np.unique(step, return_inverse=True)
  masks = np.zeros(len(steps), np.int64)
  np.bitwise_or.at(masks, inverse, np.left_shift(1, drum_class))
  tracks = []
  search = 0
  while True:
    later = steps >= search
    if not later.any():
      return tracks
    track = _one_track(steps[later], masks[later], search, steps_per_bar, gap_steps)
    if pad_end:
      padded = event_utils.next_bar(len(track.events), steps_per_bar)
      track.events = np.pad(track.events, (0, padded - len(track.events)))
      keep = event_utils.truncate_length(padded, max_steps, steps_per_bar)
    else:
      padded = len(track.events)
      keep = padded if max_steps is None else min(padded, max_steps)
    search = event_utils.next_bar(track.start_step + padded, steps_per_bar)
    track.events = track.events[:keep]
    tracks.append(track)


@functools.lru_cache(maxsize=4096)
def mask_to_set(mask: int) -> frozenset[int]:
  """Bit mask -> frozenset of classes (Magenta's drum event, used as de-dupe key)."""
  return frozenset(i for i in range(mask.bit_length()) if mask >> i & 1)


def mask_bits(masks: np.ndarray, num_classes: int) -> np.ndarray:
  """Bit masks ``[steps]`` -> multi-hot roll ``[steps, num_classes]`` (bool)."""
  return (np.right_shift(masks[:, None], np.arange(num_classes)) & 1).astype(bool)


def drums_to_sequence(events: Sequence[frozenset[int]], steps_per_quarter: int,
                      velocity: int = OUTPUT_VELOCITY, qpm: float = OUTPUT_QPM
                      ) -> music_pb2.NoteSequence:
  """``DrumTrack.to_sequence``: one-step drum notes on instrument 9."""
  step_time = 60.0 / qpm / steps_per_quarter
  ns = music_pb2.NoteSequence(ticks_per_quarter=STANDARD_PPQ)
  ns.tempos.add(qpm=qpm)
  for step, pitches in enumerate(events):
    for pitch in pitches:
      ns.notes.add(pitch=pitch, velocity=velocity, instrument=DRUM_INSTRUMENT,
                   start_time=step * step_time, end_time=(step + 1) * step_time,
                   is_drum=True)
  if ns.notes:
    ns.total_time = ns.notes[-1].end_time
  return ns


@dataclasses.dataclass(frozen=True)
class DrumsConverter(Converter):
  """Drum tracks as one-hot (512 classes) or roll tensors."""

  max_bars: int | None = None
  slice_bars: int | None = None
  gap_bars: float | None = 1.0
  pitch_classes: tuple[tuple[int, ...], ...] = REDUCED_DRUM_PITCH_CLASSES
  add_end_token: bool = False
  steps_per_quarter: int = 4
  quarters_per_bar: int = 4
  pad_to_total_time: bool = False
  roll_input: bool = False
  roll_output: bool = False
  max_tensors_per_notesequence: int | None = 5
  presplit_on_time_changes: bool = True

  def __post_init__(self):
    classes = tuple(tuple(int(p) for p in c) for c in self.pitch_classes)
    if not classes or not all(classes) or not all(0 <= p < 128 for c in classes for p in c):
      raise ValueError("pitch_classes must be non-empty lists of MIDI pitches 0..127")
    object.__setattr__(self, "pitch_classes", classes)
    if not (self.roll_input and self.roll_output) and len(classes) > _MAX_ONE_HOT_CLASSES:
      raise ValueError(f"a one-hot drum encoding of {len(classes)} classes has "
                       f"2^{len(classes)} entries; use roll_input=roll_output=True")

  @property
  def num_classes(self) -> int:
    return len(self.pitch_classes)

  @property
  def num_one_hot(self) -> int:
    return 2 ** self.num_classes

  @property
  def output_depth(self) -> int:
    base = self.num_classes if self.roll_output else self.num_one_hot
    return base + self.add_end_token

  @property
  def input_depth(self) -> int:
    base = self.num_classes + 1 if self.roll_input else self.num_one_hot
    return base + self.add_end_token

  @property
  def end_token(self) -> int | None:
    return self.output_depth - 1 if self.add_end_token else None

  @property
  def steps_per_bar(self) -> int:
    return self.steps_per_quarter * self.quarters_per_bar

  def tracks(self, qns: music_pb2.NoteSequence) -> list[event_utils.EventList]:
    """Drum tracks (bit-mask events) of a quantized sequence, padded if asked."""
    notes = event_utils.NoteArrays.from_sequence(qns)
    if not len(notes.pitch):
      return []
    drum_class = pitch_class_table(self.pitch_classes)[notes.pitch]
    hit = notes.is_drum & (drum_class >= 0) & (notes.velocity > 0)
    tracks = extract_drum_tracks(
        notes.start[hit], drum_class[hit], self.steps_per_bar, self.gap_bars,
        self.steps_per_bar * self.max_bars if self.max_bars else None)
    if self.pad_to_total_time:
      total = qns.total_quantized_steps
      for t in tracks:
        t.events = np.pad(t.events, (t.start_step, 0))[:total]
        t.events = np.pad(t.events, (0, total - len(t.events)))
        t.start_step = 0
    return tracks

  def _to_tensors(self, ns: music_pb2.NoteSequence, mode: Mode,
                  rng: np.random.Generator | None) -> ConverterTensors:
    qns = event_utils.quantize(ns, self.steps_per_quarter, self.steps_per_bar)
    if qns is None:
      return ConverterTensors()
    slice_steps = self.slice_bars * self.steps_per_bar if self.slice_bars else None
    windows = [t.events[b:e] for t in self.tracks(qns)
               for b, e in event_utils.window_bounds(len(t.events), slice_steps,
                                                     self.steps_per_bar)]
    keys = [tuple(mask_to_set(m) for m in w.tolist()) for w in windows]
    tensors = ConverterTensors()
    for i in event_utils.set_order(keys):
      inputs, outputs = self._encode(windows[i])
      tensors.extend(ConverterTensors([inputs], [outputs],
                                      [np.zeros((len(inputs), 0), np.float32)],
                                      [len(inputs)]))
    return sample_examples(tensors, self.max_tensors_per_notesequence, mode, rng)

  def _encode(self, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bit-mask events -> (inputs, outputs)."""
    end = int(self.add_end_token)
    roll = np.zeros((len(masks) + end, self.num_classes + end), np.float32)
    roll[:len(masks), :self.num_classes] = mask_bits(masks, self.num_classes)
    if end:
      roll[-1, -1] = 1.0
    one_hot = None
    if not (self.roll_input and self.roll_output):
      labels = np.append(masks, self.num_one_hot) if end else masks
      one_hot = event_utils.one_hot(labels, self.num_one_hot + end)
    outputs = roll if self.roll_output else one_hot
    if self.roll_input:
      nor = ~roll.any(axis=1, keepdims=True)
      return np.concatenate([roll, nor.astype(np.float32)], axis=1), outputs
    return one_hot, outputs

  def decode_events(self, sample: np.ndarray) -> list[frozenset[int]]:
    """Model output -> per-step sets of pitches (each class's first pitch)."""
    if self.roll_output:
      rows = sample != 0
      if self.end_token is not None:
        ends = np.flatnonzero(rows[:, self.end_token])
        rows = rows[:ends[0] if len(ends) else len(rows), :self.num_classes]
      classes = [np.flatnonzero(r) for r in rows]
    else:
      labels = np.argmax(sample, axis=-1)
      if self.end_token is not None:
        ends = np.flatnonzero(labels == self.end_token)
        labels = labels[:ends[0] if len(ends) else len(labels)]
      classes = [np.flatnonzero(b) for b in mask_bits(labels, self.num_classes)]
    # Built through a set of classes, as Magenta does, so notes come out in its order.
    return [frozenset(self.pitch_classes[c][0] for c in frozenset(cs.tolist()))
            for cs in classes]

  def from_tensors(self, samples: Sequence[np.ndarray],
                   controls: Sequence[np.ndarray] | None = None
                   ) -> list[music_pb2.NoteSequence]:
    del controls  # drums have no controls
    return [drums_to_sequence(self.decode_events(s), self.steps_per_quarter)
            for s in samples]
