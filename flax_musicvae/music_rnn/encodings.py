"""Event encodings of Magenta's MusicRNN models (Melody RNN, Drums RNN, Improv RNN).

Numpy re-implementations of note_seq's encoder/decoders, vectorised over a whole event
sequence. Each encoding turns an event sequence ``events[0..n)`` into

* ``inputs(events)`` ``[n, input_size]``: row ``p`` is note_seq's ``events_to_input(events, p)``;
* ``labels(events)`` ``[n]``: entry ``p`` is ``events_to_label(events, p)``;
* ``encode(events)``: Magenta's training pair ``(inputs[:-1], labels[1:])``;
* ``class_to_event(index, events)``: the event a sampled class stands for (lookback
  classes repeat the event 1 or 2 bars back).

Melody events: ``-2`` no event (hold / rest continues), ``-1`` note off, ``0..127`` note on.
Drum events: the bit mask of the 9 drum types hit on a step (bit ``i`` = type ``i`` of
note_seq's ``DEFAULT_DRUM_TYPE_PITCHES``), so the one-hot class of a drum event is the
mask itself. Chords (Improv RNN controls): chord-symbol figures such as ``"G7"``, or
``"N.C."``.

Encodings (reference: golden_rnn README, note_seq ``encoder_decoder.py``,
``melody_encoder_decoder.py``, ``drums_encoder_decoder.py``, ``chords_encoder_decoder.py``):

* ``MelodyOneHotEncoding(min_note, max_note)``: class 0 no event, 1 note off, 2.. pitches.
* ``OneHotEncoder``: input = one-hot of the current event, label = class of the event.
* ``LookbackEncoder``: input = current event one-hot, the event that would come next if
  the music repeated 1 and 2 bars back (one-hot each), a binary counter of the position
  (+1/-1 bits), and "the current event repeats 1/2 bars back" flags; labels add one
  class per lookback distance ("repeat the event from 1/2 bars ago").
* ``KeyMelodyEncoder`` (attention_rnn): current pitch, note/silence, attack, ascending,
  lookback repeat flags, a 7-bit counter, bar start, and two major-key estimates (whole
  melody so far and its last 3 distinct pitches).
* ``ConditionalEncoder``: chord-pitch encoding (37) of the chord at step ``p + 1``
  concatenated with the target encoding of step ``p`` (Improv RNN).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Sequence

from note_seq import chord_symbols_lib
from note_seq import chords_encoder_decoder
import numpy as np

NO_EVENT = -2
NOTE_OFF = -1
NO_CHORD = "N.C."
NOTES_PER_OCTAVE = 12
DEFAULT_STEPS_PER_BAR = 16
DEFAULT_LOOKBACK_DISTANCES = (DEFAULT_STEPS_PER_BAR, 2 * DEFAULT_STEPS_PER_BAR)
DEFAULT_MIN_NOTE = 48
DEFAULT_MAX_NOTE = 84
#: note_seq's DEFAULT_DRUM_TYPE_PITCHES: bass, snare, closed hi-hat, open hi-hat, low tom,
#: mid tom, high tom, crash, ride. The first pitch of each type is the decoded pitch.
DRUM_TYPE_PITCHES = (
    (36, 35),
    (38, 27, 28, 31, 32, 33, 34, 37, 39, 40, 56, 65, 66, 75, 85),
    (42, 44, 54, 68, 69, 70, 71, 73, 78, 80, 22),
    (46, 67, 72, 74, 79, 81, 26),
    (45, 29, 41, 43, 61, 64, 84),
    (48, 47, 60, 63, 77, 86, 87),
    (50, 30, 62, 76, 83),
    (49, 52, 55, 57, 58),
    (51, 53, 59, 82),
)
# A major key contains these pitch classes (C major = key 0).
_MAJOR_SCALE = (0, 2, 4, 5, 7, 9, 11)
# KEY_MEMBERSHIP[pc, key]: pitch class pc belongs to major key `key`.
KEY_MEMBERSHIP = np.zeros((NOTES_PER_OCTAVE, NOTES_PER_OCTAVE), np.float64)
for _key in range(NOTES_PER_OCTAVE):
  for _step in _MAJOR_SCALE:
    KEY_MEMBERSHIP[(_key + _step) % NOTES_PER_OCTAVE, _key] = 1.0


class EncodingError(ValueError):
  """An event cannot be encoded (e.g. a pitch outside the note range)."""


def _as_events(events) -> np.ndarray:
  return np.asarray(list(events) if not isinstance(events, np.ndarray) else events,
                    np.int64).reshape(-1)


def binary_counter(positions: np.ndarray, bits: int) -> np.ndarray:
  """``[n, bits]``: bit ``i`` of ``positions`` as +1 / -1 (Magenta's metric counters)."""
  on = (positions[:, None] >> np.arange(bits)[None, :]) & 1
  return np.where(on == 1, 1.0, -1.0).astype(np.float32)


def _one_hot(indices: np.ndarray, depth: int) -> np.ndarray:
  out = np.zeros((len(indices), depth), np.float32)
  out[np.arange(len(indices)), indices] = 1.0
  return out


# ----------------------------------------------------------------------------- one-hot codes


@dataclasses.dataclass(frozen=True)
class MelodyOneHotEncoding:
  """note_seq's ``MelodyOneHotEncoding``: 0 no event, 1 note off, ``2 + pitch - min_note``."""

  min_note: int = DEFAULT_MIN_NOTE
  max_note: int = DEFAULT_MAX_NOTE   # exclusive

  def __post_init__(self):
    if not 0 <= self.min_note < self.max_note <= 128:
      raise ValueError(f"need 0 <= min_note < max_note <= 128, got {self.min_note}, "
                       f"{self.max_note}")

  @property
  def num_classes(self) -> int:
    return self.max_note - self.min_note + 2

  default_event = NO_EVENT

  def encode_events(self, events: np.ndarray) -> np.ndarray:
    events = _as_events(events)
    bad = (events < NO_EVENT) | ((events >= 0) & ((events < self.min_note) |
                                                   (events >= self.max_note)))
    if bad.any():
      raise EncodingError(f"melody event {int(events[bad][0])} outside "
                          f"[{self.min_note}, {self.max_note}) (squash the melody first)")
    return np.where(events >= 0, events - self.min_note + 2, events + 2)

  def decode_class(self, index: int) -> int:
    if not 0 <= index < self.num_classes:
      raise EncodingError(f"class {index} outside [0, {self.num_classes})")
    return index - 2 if index < 2 else index - 2 + self.min_note


@dataclasses.dataclass(frozen=True)
class MultiDrumOneHotEncoding:
  """note_seq's ``MultiDrumOneHotEncoding``: the class is the bit mask of drum types hit."""

  drum_type_pitches: tuple[tuple[int, ...], ...] = DRUM_TYPE_PITCHES

  @property
  def num_classes(self) -> int:
    return 2 ** len(self.drum_type_pitches)

  default_event = 0

  @functools.cached_property
  def pitch_to_type(self) -> np.ndarray:
    table = np.full(128, -1, np.int64)
    for i, pitches in enumerate(self.drum_type_pitches):
      for p in pitches:
        if table[p] < 0:
          table[p] = i
    return table

  def event_from_pitches(self, pitches: Sequence[int]) -> int:
    """The bit mask of a set of MIDI drum pitches (unknown pitches are ignored)."""
    mask = 0
    for p in pitches:
      t = self.pitch_to_type[int(p)]
      if t >= 0:
        mask |= 1 << int(t)
    return mask

  def pitches_from_event(self, event: int) -> list[int]:
    return [pitches[0] for i, pitches in enumerate(self.drum_type_pitches) if event >> i & 1]

  def encode_events(self, events: np.ndarray) -> np.ndarray:
    events = _as_events(events)
    if ((events < 0) | (events >= self.num_classes)).any():
      raise EncodingError(f"drum events must be bit masks in [0, {self.num_classes})")
    return events

  def decode_class(self, index: int) -> int:
    if not 0 <= index < self.num_classes:
      raise EncodingError(f"class {index} outside [0, {self.num_classes})")
    return int(index)


# ----------------------------------------------------------------------------- encoders


class EventEncoder:
  """Base: ``inputs``/``labels`` for every position; ``encode`` gives the training pair."""

  input_size: int
  num_classes: int
  default_event_label: int
  conditional = False

  def inputs(self, events, controls=None) -> np.ndarray:
    raise NotImplementedError

  def labels(self, events) -> np.ndarray:
    raise NotImplementedError

  def class_to_event(self, index: int, events) -> int:
    raise NotImplementedError

  def encode(self, events, controls=None) -> tuple[np.ndarray, np.ndarray]:
    """Magenta's ``encode``: inputs of positions ``0..n-2``, labels of ``1..n-1``."""
    events = _as_events(events)
    if len(events) < 2:
      raise EncodingError("an event sequence needs at least 2 events to encode")
    return self.inputs(events[:-1], controls), self.labels(events)[1:]

  def labels_to_events(self, labels: Sequence[int], events=()) -> list[int]:
    """Decodes class indices one after the other, appending to ``events``."""
    out = [int(e) for e in events]
    for label in labels:
      out.append(self.class_to_event(int(label), out))
    return out[len(events):]


@dataclasses.dataclass(frozen=True)
class OneHotEncoder(EventEncoder):
  """``OneHotEventSequenceEncoderDecoder`` (basic_rnn, mono_rnn)."""

  one_hot: MelodyOneHotEncoding | MultiDrumOneHotEncoding = MelodyOneHotEncoding()

  @property
  def input_size(self) -> int:
    return self.one_hot.num_classes

  @property
  def num_classes(self) -> int:
    return self.one_hot.num_classes

  @property
  def default_event_label(self) -> int:
    return int(self.one_hot.encode_events([self.one_hot.default_event])[0])

  def inputs(self, events, controls=None) -> np.ndarray:
    return _one_hot(self.one_hot.encode_events(events), self.input_size)

  def labels(self, events) -> np.ndarray:
    return self.one_hot.encode_events(events)

  def class_to_event(self, index: int, events) -> int:
    return self.one_hot.decode_class(index)


def _repeats(events: np.ndarray, distance: int) -> np.ndarray:
  """``[n]`` bool: ``events[p] == events[p - distance]`` (False where p < distance)."""
  out = np.zeros(len(events), bool)
  if distance < len(events):
    out[distance:] = events[distance:] == events[:-distance]
  return out


@dataclasses.dataclass(frozen=True)
class LookbackEncoder(EventEncoder):
  """``LookbackEventSequenceEncoderDecoder`` (lookback_rnn; drum_kit with no lookbacks)."""

  one_hot: MelodyOneHotEncoding | MultiDrumOneHotEncoding = MelodyOneHotEncoding()
  lookback_distances: tuple[int, ...] = DEFAULT_LOOKBACK_DISTANCES
  binary_counter_bits: int = 5

  @property
  def input_size(self) -> int:
    k, n = self.one_hot.num_classes, len(self.lookback_distances)
    return k + n * k + self.binary_counter_bits + n

  @property
  def num_classes(self) -> int:
    return self.one_hot.num_classes + len(self.lookback_distances)

  @property
  def default_event_label(self) -> int:
    return int(self.one_hot.encode_events([self.one_hot.default_event])[0])

  def inputs(self, events, controls=None) -> np.ndarray:
    events = _as_events(events)
    n, k = len(events), self.one_hot.num_classes
    classes = self.one_hot.encode_events(events)
    default = self.default_event_label
    parts = [_one_hot(classes, k)]
    pos = np.arange(n)
    for d in self.lookback_distances:
      src = pos - d + 1          # the event that follows the one d steps back
      parts.append(_one_hot(np.where(src >= 0, classes[np.maximum(src, 0)], default), k))
    parts.append(binary_counter(pos + 1, self.binary_counter_bits))
    for d in self.lookback_distances:
      parts.append(_repeats(events, d)[:, None].astype(np.float32))
    return np.concatenate(parts, -1).astype(np.float32)

  def labels(self, events) -> np.ndarray:
    events = _as_events(events)
    labels = self.one_hot.encode_events(events).copy()
    k, dists = self.one_hot.num_classes, self.lookback_distances
    # Earlier (nearer) lookbacks first so the farthest repeat wins, as in note_seq.
    for i, d in enumerate(dists):
      labels[_repeats(events, d)] = k + i
    if dists:
      early = (np.arange(len(events)) < dists[-1]) & (events == self.one_hot.default_event)
      labels[early] = k + len(dists) - 1
    return labels

  def class_to_event(self, index: int, events) -> int:
    k = self.one_hot.num_classes
    if k <= index < self.num_classes:
      d = self.lookback_distances[index - k]
      return int(events[-d]) if len(events) >= d else self.one_hot.default_event
    return self.one_hot.decode_class(index)


@dataclasses.dataclass(frozen=True)
class KeyMelodyEncoder(EventEncoder):
  """``KeyMelodyEncoderDecoder`` (attention_rnn): 74 inputs, 40 classes at the defaults."""

  min_note: int = DEFAULT_MIN_NOTE
  max_note: int = DEFAULT_MAX_NOTE
  lookback_distances: tuple[int, ...] = DEFAULT_LOOKBACK_DISTANCES
  binary_counter_bits: int = 7

  @property
  def note_range(self) -> int:
    return self.max_note - self.min_note

  @property
  def input_size(self) -> int:
    return (self.note_range + 2 + 1 + 1 + len(self.lookback_distances) +
            self.binary_counter_bits + 1 + 2 * NOTES_PER_OCTAVE)

  @property
  def num_classes(self) -> int:
    return self.note_range + 2 + len(self.lookback_distances)

  @property
  def default_event_label(self) -> int:
    return self.note_range

  def _check(self, events: np.ndarray) -> None:
    bad = (events < NO_EVENT) | ((events >= 0) & ((events < self.min_note) |
                                                   (events >= self.max_note)))
    if bad.any():
      raise EncodingError(f"melody event {int(events[bad][0])} outside "
                          f"[{self.min_note}, {self.max_note}) (squash the melody first)")

  def inputs(self, events, controls=None) -> np.ndarray:
    events = _as_events(events)
    self._check(events)
    n, r = len(events), self.note_range
    out = np.zeros((n, self.input_size), np.float32)
    # Running state over the melody so far (note-offs before the first note are
    # no-events, which changes nothing here: they only clear an absent note).
    current, attack, ascending = None, False, None
    last3: list[int] = []
    hist = np.zeros(NOTES_PER_OCTAVE)
    off_look = r + 4
    off_count = off_look + len(self.lookback_distances)
    off_bar = off_count + self.binary_counter_bits
    off_key = off_bar + 1
    for p, e in enumerate(events.tolist()):
      if e == NO_EVENT:
        attack = False
      elif e == NOTE_OFF:
        current = None
      else:
        attack, current = True, e
        if last3:
          if e > last3[-1]:
            ascending = True
          elif e < last3[-1]:
            ascending = False
        if e in last3:
          last3.remove(e)
        last3.append(e)
        last3 = last3[-3:]
        hist[e % NOTES_PER_OCTAVE] += 1
      row = out[p]
      if current:   # note_seq tests the pitch's truth value
        row[current - self.min_note] = 1.0
        row[r] = 1.0
      else:
        row[r + 1] = 1.0
      if attack:
        row[r + 2] = 1.0
      if ascending is not None:
        row[r + 3] = 1.0 if ascending else -1.0
      if (p + 1) % DEFAULT_STEPS_PER_BAR == 0:
        row[off_bar] = 1.0
      keys = hist @ KEY_MEMBERSHIP
      row[off_key:off_key + 12] = keys == keys.max()
      recent = np.zeros(NOTES_PER_OCTAVE)
      for q in last3:
        recent[q % NOTES_PER_OCTAVE] += 1
      recent_keys = recent @ KEY_MEMBERSHIP
      row[off_key + 12:off_key + 24] = recent_keys == recent_keys.max()
    for i, d in enumerate(self.lookback_distances):
      out[:, off_look + i] = _repeats(events, d)
    out[:, off_count:off_bar] = binary_counter(np.arange(n) + 1, self.binary_counter_bits)
    return out

  def labels(self, events) -> np.ndarray:
    events = _as_events(events)
    self._check(events)
    r, dists = self.note_range, self.lookback_distances
    labels = np.where(events >= 0, events - self.min_note,
                      np.where(events == NOTE_OFF, r + 1, r))
    for i, d in enumerate(dists):
      labels[_repeats(events, d)] = r + 2 + i
    early = (np.arange(len(events)) < dists[-1]) & (events == NO_EVENT)
    labels[early] = r + len(dists) + 1
    return labels

  def class_to_event(self, index: int, events) -> int:
    r = self.note_range
    if not 0 <= index < self.num_classes:
      raise EncodingError(f"class {index} outside [0, {self.num_classes})")
    if index >= r + 2:
      d = self.lookback_distances[index - r - 2]
      return int(events[-d]) if len(events) >= d else NO_EVENT
    if index == r + 1:
      return NOTE_OFF
    if index == r:
      return NO_EVENT
    return self.min_note + index


# ----------------------------------------------------------------------------- chords


@functools.lru_cache(maxsize=4096)
def chord_pitch_vector(figure: str) -> tuple[float, ...]:
  """note_seq's ``PitchChordsEncoderDecoder`` input for one chord figure (37 floats)."""
  out = [0.0] * (3 * NOTES_PER_OCTAVE + 1)
  if figure == NO_CHORD:
    out[0] = 1.0
    return tuple(out)
  try:
    root = chord_symbols_lib.chord_symbol_root(figure)
    pitches = chord_symbols_lib.chord_symbol_pitches(figure)
    bass = chord_symbols_lib.chord_symbol_bass(figure)
  except chord_symbols_lib.ChordSymbolError as e:
    raise EncodingError(f"cannot parse chord symbol {figure!r}: {e}") from e
  out[1 + root] = 1.0
  for p in pitches:
    out[1 + NOTES_PER_OCTAVE + p] = 1.0
  out[1 + 2 * NOTES_PER_OCTAVE + bass] = 1.0
  return tuple(out)


def chord_pitches(figures: Sequence[str]) -> np.ndarray:
  """``[n, 37]`` chord-pitch encodings of chord figures."""
  return np.array([chord_pitch_vector(str(f)) for f in figures], np.float32).reshape(
      -1, 3 * NOTES_PER_OCTAVE + 1)


NUM_TRIAD_CLASSES = 49


@functools.lru_cache(maxsize=4096)
def triad_class(figure: str) -> int:
  """note_seq's ``TriadChordOneHotEncoding`` class (0 no chord, 1 + 12 * quality + root)."""
  try:
    return int(chords_encoder_decoder.TriadChordOneHotEncoding().encode_event(figure))
  except Exception as e:  # ChordSymbolError / ChordEncodingError  pylint: disable=broad-except
    raise EncodingError(f"cannot encode chord symbol {figure!r} as a triad: {e}") from e


def chord_triads(figures: Sequence[str]) -> np.ndarray:
  """``[n, 49]`` one-hot triad classes of chord figures."""
  return _one_hot(np.array([triad_class(str(f)) for f in figures], np.int64),
                  NUM_TRIAD_CLASSES)


@dataclasses.dataclass(frozen=True)
class ConditionalEncoder(EventEncoder):
  """``ConditionalEventSequenceEncoderDecoder(PitchChordsEncoderDecoder, target)``.

  Row ``p`` of the inputs is the chord encoding of ``controls[p + 1]`` followed by the
  target encoding of ``events[p]``, so ``controls`` must be one longer than ``events``.
  """

  target: EventEncoder = OneHotEncoder()
  chord_encoding: str = "pitches"    # pitches (PitchChordsEncoderDecoder) | triad
  conditional = True

  @property
  def control_size(self) -> int:
    return NUM_TRIAD_CLASSES if self.chord_encoding == "triad" else 3 * NOTES_PER_OCTAVE + 1

  def encode_chords(self, figures: Sequence[str]) -> np.ndarray:
    return chord_triads(figures) if self.chord_encoding == "triad" else chord_pitches(figures)

  @property
  def input_size(self) -> int:
    return self.control_size + self.target.input_size

  @property
  def num_classes(self) -> int:
    return self.target.num_classes

  @property
  def default_event_label(self) -> int:
    return self.target.default_event_label

  def inputs(self, events, controls=None) -> np.ndarray:
    events = _as_events(events)
    if controls is None or len(controls) < len(events) + 1:
      raise EncodingError(f"{len(events)} events need {len(events) + 1} chords, got "
                          f"{0 if controls is None else len(controls)}")
    chords = self.encode_chords(list(controls)[1:len(events) + 1])
    return np.concatenate([chords, self.target.inputs(events)], -1)

  def encode(self, events, controls=None) -> tuple[np.ndarray, np.ndarray]:
    events = _as_events(events)
    if controls is None or len(controls) != len(events):
      raise EncodingError("Improv RNN needs one chord per melody step")
    return self.inputs(events[:-1], controls), self.target.labels(events)[1:]

  def labels(self, events) -> np.ndarray:
    return self.target.labels(events)

  def class_to_event(self, index: int, events) -> int:
    return self.target.class_to_event(index, events)


# ----------------------------------------------------------------------------- registry


def make_encoder(name: str, *, min_note: int = DEFAULT_MIN_NOTE,
                 max_note: int = DEFAULT_MAX_NOTE) -> EventEncoder:
  """The encoder of one of Magenta's MusicRNN configs, by its encoding name.

  ``melody_one_hot`` (basic_rnn; mono_rnn with 0..128), ``lookback`` (lookback_rnn),
  ``key_melody`` (attention_rnn), ``drum_kit`` (drum_kit: multi-drum one-hot, no
  lookbacks, 6 counter bits), ``drums_one_hot`` (plain one-hot of the 9-type drum
  masks), ``chord_pitches_improv`` (chord pitches + melody one-hot), ``basic_improv``
  (triad one-hot + melody one-hot), ``attention_improv`` (triad one-hot + key melody).
  """
  melody = MelodyOneHotEncoding(min_note, max_note)
  if name == "melody_one_hot":
    return OneHotEncoder(melody)
  if name == "lookback":
    return LookbackEncoder(melody)
  if name == "key_melody":
    return KeyMelodyEncoder(min_note, max_note)
  if name == "drum_kit":
    return LookbackEncoder(MultiDrumOneHotEncoding(), lookback_distances=(),
                           binary_counter_bits=6)
  if name == "drums_one_hot":
    return OneHotEncoder(MultiDrumOneHotEncoding())
  if name == "chord_pitches_improv":
    return ConditionalEncoder(OneHotEncoder(melody))
  if name == "basic_improv":
    return ConditionalEncoder(OneHotEncoder(melody), chord_encoding="triad")
  if name == "attention_improv":
    return ConditionalEncoder(KeyMelodyEncoder(min_note, max_note), chord_encoding="triad")
  raise ValueError(f"unknown MusicRNN encoding {name!r}; known: {ENCODINGS}")


ENCODINGS = ("melody_one_hot", "lookback", "key_melody", "drum_kit", "drums_one_hot",
             "chord_pitches_improv", "basic_improv", "attention_improv")
