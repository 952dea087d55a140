"""NoteSequence -> MusicRNN training examples (Magenta's ``*_rnn_create_dataset`` pipelines).

Melody RNN: quantize (4 steps per quarter) -> ``MelodyExtractor(min_bars=7, max_steps=512,
min_unique_pitches=5, gap_bars=1)`` (highest note of a chord kept, drums ignored, padded
to whole bars) -> ``Melody.squash(48, 84, transpose_to_key=0)`` -> encode.
Drums RNN: ``DrumsExtractor(min_bars=7, max_steps=512, gap_bars=1)`` -> encode.
Improv RNN: the melodies above with the chord active at each of their steps (chord
symbols of the sequence; inferred by note_seq when it has none), in all 12
transpositions (-6..5 semitones, as Magenta's ``LeadSheetExtractor`` with
``all_transpositions``), squashed to [48, 84) without a key change -> encode.

Every example is one whole extracted track: ``inputs [n-1, input_size]``, ``outputs``
the one-hot labels ``[n-1, classes]``, no controls (chords are part of the inputs).
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

from note_seq import chord_symbols_lib
from note_seq import chords_lib as ns_chords
from note_seq import sequences_lib
from note_seq.protobuf import music_pb2
import numpy as np

from flax_musicvae.data import chords as chords_lib
from flax_musicvae.data import drums as drums_data
from flax_musicvae.data import event_utils
from flax_musicvae.data import melody as melody_data
from flax_musicvae.data.converter import Converter, ConverterTensors, Mode
from flax_musicvae.music_rnn import encodings

NOTES_PER_OCTAVE = 12
MELODY_ENCODINGS = ("melody_one_hot", "lookback", "key_melody")
DRUM_ENCODINGS = ("drum_kit", "drums_one_hot")
IMPROV_ENCODINGS = ("chord_pitches_improv", "basic_improv", "attention_improv")


# ----------------------------------------------------------------------------- melodies


def major_key(events: np.ndarray) -> int:
  """``Melody.get_major_key``: the major key holding most note-ons (lowest on ties)."""
  pitches = events[events >= 0]
  hist = np.bincount(pitches % NOTES_PER_OCTAVE, minlength=NOTES_PER_OCTAVE)
  return int(np.argmax(hist @ encodings.KEY_MEMBERSHIP))


def transpose(events: np.ndarray, amount: int, min_note: int = 0,
              max_note: int = 128) -> np.ndarray:
  """``Melody.transpose``: shift note-ons, then octave-fold them into [min_note, max_note)."""
  out = np.asarray(events, np.int64).copy()
  on = out >= 0
  p = out[on] + amount
  low, high = p < min_note, p >= max_note
  p[low] = min_note + (p[low] - min_note) % NOTES_PER_OCTAVE
  p[high] = max_note - NOTES_PER_OCTAVE + (p[high] - max_note) % NOTES_PER_OCTAVE
  out[on] = p
  return out


def squash(events: np.ndarray, min_note: int, max_note: int,
           transpose_to_key: int | None) -> tuple[np.ndarray, int]:
  """``Melody.squash``: (squashed events, semitones transposed)."""
  events = np.asarray(events, np.int64)
  if transpose_to_key is None:
    amount = 0
  else:
    notes = events[events >= 0]
    if not len(notes):
      return events.copy(), 0
    key_diff = transpose_to_key - major_key(events)
    center = (int(notes.min()) + int(notes.max())) / 2
    target = (min_note + max_note - 1) / 2
    diff = target - (center + key_diff)
    amount = key_diff + NOTES_PER_OCTAVE * int(round(diff / float(NOTES_PER_OCTAVE)))
  return transpose(events, amount, min_note, max_note), amount


def steps_per_bar(qns: music_pb2.NoteSequence) -> int | None:
  spb = sequences_lib.steps_per_bar_in_quantized_sequence(qns)
  return int(spb) if float(spb).is_integer() else None


def quantize(ns: music_pb2.NoteSequence, steps_per_quarter: int
             ) -> music_pb2.NoteSequence | None:
  try:
    return sequences_lib.quantize_note_sequence(ns, steps_per_quarter)
  except (sequences_lib.BadTimeSignatureError, sequences_lib.NegativeTimeError,
          sequences_lib.MultipleTimeSignatureError, sequences_lib.MultipleTempoError):
    return None


def extract_melodies(qns: music_pb2.NoteSequence, *, min_bars: int = 7,
                     max_steps: int | None = 512, min_unique_pitches: int = 5,
                     gap_bars: float = 1.0) -> list[event_utils.EventList]:
  """Magenta's ``extract_melodies`` with the MelodyExtractor's settings."""
  spb = steps_per_bar(qns)
  if spb is None or not qns.notes:
    return []
  tracks = melody_data.extract_melodies(event_utils.NoteArrays.from_sequence(qns), spb,
                                        gap_bars, max_steps, keep_highest=True,
                                        pad_end=False)
  out = []
  for t in tracks:
    if len(t.events) < spb * min_bars:
      continue
    pitches = t.events[t.events >= 0]
    if len(np.unique(pitches % NOTES_PER_OCTAVE)) < min_unique_pitches:
      continue
    out.append(t)
  return out


def extract_drum_tracks(qns: music_pb2.NoteSequence, *, min_bars: int = 7,
                        max_steps: int | None = 512, gap_bars: float = 1.0
                        ) -> list[event_utils.EventList]:
  """Magenta's ``extract_drum_tracks`` (DrumsExtractor settings); events are type masks."""
  spb = steps_per_bar(qns)
  if spb is None or not qns.notes:
    return []
  notes = event_utils.NoteArrays.from_sequence(qns)
  drum_class = drums_data.pitch_class_table(encodings.DRUM_TYPE_PITCHES)[notes.pitch]
  hit = notes.is_drum & (drum_class >= 0) & (notes.velocity > 0)
  tracks = drums_data.extract_drum_tracks(notes.start[hit], drum_class[hit], spb, gap_bars,
                                          max_steps, pad_end=False)
  return [t for t in tracks if len(t.events) >= spb * min_bars]


def chords_for(qns: music_pb2.NoteSequence, track: event_utils.EventList) -> list[str] | None:
  """The chord figure active at each step of ``track`` (None if the chords clash)."""
  try:
    ids, figures = chords_lib.chords_per_step(qns)
  except chords_lib.CoincidentChordsError:
    return None
  window = chords_lib.window_chords(ids, track.start_step, len(track.events))
  return [figures[i] for i in window.tolist()]


# ----------------------------------------------------------------------------- converter


@dataclasses.dataclass(frozen=True)
class MusicRNNConverter(Converter):
  """Examples for one MusicRNN encoding (``encodings.make_encoder`` names)."""

  encoding: str = "melody_one_hot"
  min_note: int = encodings.DEFAULT_MIN_NOTE
  max_note: int = encodings.DEFAULT_MAX_NOTE
  transpose_to_key: int | None = 0
  steps_per_quarter: int = 4
  min_bars: int = 7
  max_steps: int = 512
  min_unique_pitches: int = 5
  gap_bars: float = 1.0
  all_transpositions: bool = True        # improv only
  max_tensors_per_notesequence: int | None = None
  presplit_on_time_changes: bool = True

  def __post_init__(self):
    if self.encoding not in MELODY_ENCODINGS + DRUM_ENCODINGS + IMPROV_ENCODINGS:
      raise ValueError(f"unknown encoding {self.encoding!r}")

  @property
  def encoder(self) -> encodings.EventEncoder:
    return encodings.make_encoder(self.encoding, min_note=self.min_note,
                                  max_note=self.max_note)

  @property
  def kind(self) -> str:
    if self.encoding in DRUM_ENCODINGS:
      return "drums"
    return "improv" if self.encoding in IMPROV_ENCODINGS else "melody"

  @property
  def input_depth(self) -> int:
    return self.encoder.input_size

  @property
  def output_depth(self) -> int:
    return self.encoder.num_classes

  def event_sequences(self, ns: music_pb2.NoteSequence
                      ) -> list[tuple[np.ndarray, list[str] | None]]:
    """Model-side event sequences (and chords for improv) of one NoteSequence."""
    qns = quantize(ns, self.steps_per_quarter)
    if qns is None:
      return []
    kw = dict(min_bars=self.min_bars, max_steps=self.max_steps, gap_bars=self.gap_bars)
    if self.kind == "drums":
      return [(t.events, None) for t in extract_drum_tracks(qns, **kw)]
    if self.kind == "improv" and not chords_lib.infer_chords_if_missing(qns):
      return []
    out = []
    for t in extract_melodies(qns, min_unique_pitches=self.min_unique_pitches, **kw):
      if self.kind == "melody":
        out.append((squash(t.events, self.min_note, self.max_note,
                           self.transpose_to_key)[0], None))
        continue
      figures = chords_for(qns, t)
      if figures is None:
        continue
      amounts = range(-6, 6) if self.all_transpositions else (0,)
      for amount in amounts:
        events = transpose(t.events, amount)
        if (events[events >= 0] > 127).any() or (events[events >= 0] < 0).any():
          continue
        chords = [transpose_chord(f, amount) for f in figures]
        events = squash(events, self.min_note, self.max_note, None)[0]
        out.append((events, chords))
    return out

  def all_event_sequences(self, ns: music_pb2.NoteSequence
                          ) -> list[tuple[np.ndarray, list[str] | None]]:
    """:meth:`event_sequences` of every piece of ``ns`` split on tempo/time changes."""
    pieces = (sequences_lib.split_note_sequence_on_time_changes(ns)
              if self.presplit_on_time_changes else [ns])
    return [x for piece in pieces for x in self.event_sequences(piece)]

  def _to_tensors(self, ns: music_pb2.NoteSequence, mode: Mode,
                  rng: np.random.Generator | None) -> ConverterTensors:
    enc = self.encoder
    tensors = ConverterTensors()
    for events, chords in self.event_sequences(ns):
      try:
        inputs, labels = enc.encode(events, chords)
      except encodings.EncodingError:
        continue
      outputs = event_utils.one_hot(labels, enc.num_classes)
      tensors.extend(ConverterTensors([inputs], [outputs],
                                      [np.zeros((len(inputs), 0), np.float32)],
                                      [len(inputs)]))
    return tensors

  def from_tensors(self, samples: Sequence[np.ndarray],
                   controls: Sequence[np.ndarray] | None = None
                   ) -> list[music_pb2.NoteSequence]:
    """Label one-hots / logits ``[steps, classes]`` -> NoteSequences (lookbacks resolved)."""
    out = []
    for sample in samples:
      events = self.encoder.labels_to_events(np.argmax(sample, -1).tolist())
      out.append(events_to_sequence(events, self.kind, self.steps_per_quarter))
    return out


def transpose_chord(figure: str, amount: int) -> str:
  if figure == encodings.NO_CHORD or amount == 0:
    return figure
  return chord_symbols_lib.transpose_chord_symbol(figure, amount % NOTES_PER_OCTAVE)


def events_to_sequence(events: Sequence[int], kind: str, steps_per_quarter: int = 4,
                       qpm: float = 120.0, velocity: int = 100,
                       chords: Sequence[str] | None = None) -> music_pb2.NoteSequence:
  """``Melody.to_sequence`` / ``DrumTrack.to_sequence`` (velocity 100) from step 0."""
  if kind == "drums":
    drum = encodings.MultiDrumOneHotEncoding()
    ns = music_pb2.NoteSequence(ticks_per_quarter=melody_data.STANDARD_PPQ)
    ns.tempos.add(qpm=qpm)
    step_time = 60.0 / qpm / steps_per_quarter
    for step, mask in enumerate(events):
      for pitch in drum.pitches_from_event(int(mask)):
        ns.notes.add(pitch=pitch, velocity=velocity, start_time=step * step_time,
                     end_time=(step + 1) * step_time, is_drum=True, instrument=9)
    ns.total_time = len(events) * step_time
    return ns
  ns = melody_data.melody_to_sequence(events, steps_per_quarter, velocity=velocity, qpm=qpm)
  if chords:
    step_time = 60.0 / qpm / steps_per_quarter
    ns_chords.add_chords_to_sequence(ns, list(chords), [i * step_time
                                                        for i in range(len(chords))])
  return ns
