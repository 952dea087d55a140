"""Multi-instrument metric performances (Magenta's ``MultiInstrumentPerformanceConverter``).

A sequence is cut into ``hop_size_bars`` windows (by time, at its first tempo), each
quantized at ``steps_per_quarter`` (24: 96 steps per 4/4 bar). Every instrument of a
window becomes a performance event track (note-on / note-off per pitch, time shifts up to
4 quarters, ``num_velocity_bins`` velocity events) cut into ``chunk_size_bars`` chunks.
A track chunk is the token list ``[program, events..., end]`` (program token 128 = drums).
Examples are hierarchical: ``chunks x max_num_instruments`` segments of
``max_events_per_instrument`` steps, flattened to ``[segments * events, depth]``; missing
instruments are a single end token; ``lengths`` holds one length per segment. With
``chord_encoding='triad'`` each token gets the triad chord active at its step as a
control (no-chord on padding, the last chord repeated on the end token).

Windows are dropped (as in Magenta) when a pitch is outside ``[min_pitch, max_pitch]``,
the instrument count is outside ``[min_num_instruments, max_num_instruments]``, a track
chunk needs more than ``max_events_per_instrument - 2`` events, the window has fewer
than ``min_total_events`` events, or a chord cannot be encoded; the whole sequence gives
nothing when a window is not in the expected meter. Where Magenta would crash (a track
mixing programs or drum/non-drum notes, decoding chords from a sample with no events) this converter drops the window or adds no chords.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Sequence

import note_seq
import numpy as np
from note_seq import chords_lib, performance_lib, sequences_lib
from note_seq.protobuf import music_pb2

from flax_musicvae.data import event_utils
from flax_musicvae.data.converter import Converter, ConverterTensors, Mode, sample_examples

_CHORD_SYMBOL = music_pb2.NoteSequence.TextAnnotation.CHORD_SYMBOL
_TIME_SHIFT = performance_lib.PerformanceEvent.TIME_SHIFT
_NOTE_OFF = performance_lib.PerformanceEvent.NOTE_OFF
NUM_PROGRAMS = note_seq.MAX_MIDI_PROGRAM - note_seq.MIN_MIDI_PROGRAM + 1
#: Program tokens: one per MIDI program plus one for drums.
NUM_PROGRAM_TOKENS = NUM_PROGRAMS + 1
QPM = note_seq.DEFAULT_QUARTERS_PER_MINUTE


def split_track(track: performance_lib.MetricPerformance, segment_steps: int,
                make) -> list[performance_lib.MetricPerformance]:
  """Cuts a performance into ``segment_steps`` pieces (``make(start_step)`` builds one).

  Time shifts crossing a boundary are divided; at a boundary note-offs stay in the
  earlier piece and every other event opens the next one. A trailing empty piece is
  dropped. Each piece is then re-derived from its notes, so notes held across a
  boundary end there and do not restart (Magenta's ``clip_tied_notes``).
  """
  pieces = [make(0)]
  step = 0
  for event in track:
    if event.event_type == _TIME_SHIFT:
      take = min(event.event_value, segment_steps - step)
      if take == event.event_value:
        pieces[-1].append(event)
        step += take
        continue
      if take > 0:
        pieces[-1].append(performance_lib.PerformanceEvent(_TIME_SHIFT, take))
      pieces.append(make(len(pieces) * segment_steps))
      rest = event.event_value - take
      step = rest
      if rest > 0:
        pieces[-1].append(performance_lib.PerformanceEvent(_TIME_SHIFT, rest))
      continue
    if step == segment_steps and event.event_type != _NOTE_OFF:
      pieces.append(make(len(pieces) * segment_steps))
      step = 0
    pieces[-1].append(event)
  if pieces[-1].num_steps == 0:
    pieces.pop()
  clipped = []
  for piece in pieces:
    qns = sequences_lib.quantize_note_sequence(piece.to_sequence(),
                                               steps_per_quarter=piece.steps_per_quarter)
    redone = make(piece.start_step, qns)
    redone.set_length(segment_steps)
    clipped.append(redone)
  return clipped


@dataclasses.dataclass(frozen=True)
class MultiInstrumentPerformanceConverter(Converter):
  """Up to ``max_num_instruments`` performance tracks per ``hop_size_bars`` window."""

  num_velocity_bins: int = 0
  max_tensors_per_notesequence: int | None = None
  hop_size_bars: int = 1
  chunk_size_bars: int = 1
  steps_per_quarter: int = 24
  quarters_per_bar: int = 4
  min_num_instruments: int = 2
  max_num_instruments: int = 8
  min_total_events: int = 8
  max_events_per_instrument: int = 64
  min_pitch: int = performance_lib.MIN_MIDI_PITCH
  max_pitch: int = performance_lib.MAX_MIDI_PITCH
  first_subsequence_only: bool = False
  chord_encoding: str | None = None
  drop_tracks_and_truncate: bool = False
  presplit_on_time_changes: bool = True

  def __post_init__(self):
    if self.chord_encoding not in (None, "triad"):
      raise ValueError(f"chord_encoding must be None or 'triad', got {self.chord_encoding!r}")
    if self.hop_size_bars % self.chunk_size_bars:
      raise ValueError(f"hop_size_bars={self.hop_size_bars} is not a multiple of "
                       f"chunk_size_bars={self.chunk_size_bars}")

  @functools.cached_property
  def performance_encoding(self) -> note_seq.PerformanceOneHotEncoding:
    return note_seq.PerformanceOneHotEncoding(
        num_velocity_bins=self.num_velocity_bins,
        max_shift_steps=performance_lib.DEFAULT_MAX_SHIFT_QUARTERS * self.steps_per_quarter,
        min_pitch=self.min_pitch, max_pitch=self.max_pitch)

  @functools.cached_property
  def chord_encoder(self) -> note_seq.TriadChordOneHotEncoding | None:
    return note_seq.TriadChordOneHotEncoding() if self.chord_encoding else None

  @property
  def num_chunks(self) -> int:
    return self.hop_size_bars // self.chunk_size_bars

  @property
  def num_segments(self) -> int:
    """Decoder / encoder segments per example: chunks x instruments."""
    return self.num_chunks * self.max_num_instruments

  @property
  def steps_per_bar(self) -> int:
    return self.steps_per_quarter * self.quarters_per_bar

  @property
  def end_token_index(self) -> int:
    """Token closing every track chunk (the last class)."""
    return self.performance_encoding.num_classes + NUM_PROGRAM_TOKENS

  @property
  def end_token(self) -> int | None:
    # Segments are sampled to their full length (as Magenta's TrainedModel does);
    # from_tensors trims each at ``end_token_index``.
    return None

  @property
  def input_depth(self) -> int:
    return self.end_token_index + 1

  @property
  def output_depth(self) -> int:
    return self.input_depth

  @property
  def control_depth(self) -> int:
    return self.chord_encoder.num_classes if self.chord_encoder else 0

  @property
  def max_seq_len(self) -> int:
    return self.num_segments * self.max_events_per_instrument

  # --- to_tensors

  def _new_track(self, track, start_step: int, qns=None) -> performance_lib.MetricPerformance:
    return performance_lib.MetricPerformance(
        quantized_sequence=qns, steps_per_quarter=None if qns is not None
        else self.steps_per_quarter, start_step=start_step,
        num_velocity_bins=self.num_velocity_bins, program=track.program,
        is_drum=track.is_drum)

  def _extract_tracks(self, qns, rng) -> list[performance_lib.MetricPerformance] | None:
    """One performance per instrument (drums last), or None if the window is rejected."""
    max_steps = self.steps_per_bar * self.hop_size_bars
    tracks = []
    # Magenta's order: a set's iteration order, then a stable sort by (drums, program).
    for instrument in set(n.instrument for n in qns.notes):
      track = performance_lib.MetricPerformance(
          qns, start_step=0, num_velocity_bins=self.num_velocity_bins, instrument=instrument)
      if track.num_steps > max_steps:
        track.set_length(max_steps)
      tracks.append(track)
    if self.drop_tracks_and_truncate and len(tracks) > self.max_num_instruments:
      if rng is None:
        raise ValueError("drop_tracks_and_truncate samples tracks: pass rng")
      tracks = [tracks[i] for i in rng.choice(len(tracks), self.max_num_instruments,
                                              replace=False)]
    if not self.min_num_instruments <= len(tracks) <= self.max_num_instruments:
      return None
    if any(t.is_drum is None or (not t.is_drum and t.program is None) for t in tracks):
      return None   # mixed programs / drum flags in one instrument: Magenta fails here
    return sorted(tracks, key=lambda t: (t.is_drum, t.program or 0))

  def _window_tokens(self, qns, rng):
    """Per chunk, per track: token ids and (with chords) chord ids; None if rejected."""
    if any(not self.min_pitch <= n.pitch <= self.max_pitch for n in qns.notes):
      return None
    tracks = self._extract_tracks(qns, rng)
    if tracks is None:
      return None
    chunk_steps = self.steps_per_bar * self.chunk_size_bars
    chunks = [[] for _ in range(self.num_chunks)]
    total = 0
    for track in tracks:
      track.set_length(self.steps_per_bar * self.hop_size_bars)
      pieces = split_track(track, chunk_steps,
                           lambda start, q=None, t=track: self._new_track(t, start, q))
      assert len(pieces) == self.num_chunks
      if self.drop_tracks_and_truncate:
        for p in pieces:
          p.truncate(self.max_events_per_instrument - 2)
      if any(len(p) > self.max_events_per_instrument - 2 for p in pieces):
        return None
      total += sum(len(p) for p in pieces)
      for i, p in enumerate(pieces):
        chunks[i].append(p)
    if total < self.min_total_events:
      return None
    enc = self.performance_encoding
    tokens = [[[enc.num_classes + (NUM_PROGRAMS if t.is_drum else t.program)]
               + [enc.encode_event(e) for e in t] + [self.end_token_index] for t in chunk]
              for chunk in chunks]
    if not self.chord_encoder:
      return tokens, None
    chord_ids = []
    try:
      for chunk in chunks:
        per_track = []
        for figures in chords_lib.event_list_chords(qns, chunk):
          ids = [self.chord_encoder.encode_event(note_seq.NO_CHORD)]
          ids += [self.chord_encoder.encode_event(f) for f in figures]
          per_track.append(ids + ids[-1:])
        chord_ids.append(per_track)
    except (chords_lib.CoincidentChordsError, note_seq.ChordSymbolError,
            note_seq.ChordEncodingError):
      return None
    return tokens, chord_ids

  def _flatten(self, nested: list[list[list[int]]], depth: int, pad_token: int
               ) -> tuple[np.ndarray, np.ndarray] | None:
    """``[segments * events, depth]`` one-hots and per-segment lengths; None if too long."""
    segments = [track for chunk in nested for track in
                chunk + [[pad_token]] * (self.max_num_instruments - len(chunk))]
    if len(segments) > self.num_segments or any(
        len(s) > self.max_events_per_instrument for s in segments):
      return None
    n = self.max_events_per_instrument
    out = np.zeros((self.num_segments * n, depth), np.float32)
    for k, seg in enumerate(segments):
      out[k * n + np.arange(len(seg)), seg] = 1.0
    return out, np.array([len(s) for s in segments], np.int32)

  def _add_inferred_chords(self, ns: music_pb2.NoteSequence) -> bool:
    """Magenta infers chords on a quantized copy and copies them back; False on failure."""
    qns = event_utils.quantize(ns, self.steps_per_quarter, self.steps_per_bar)
    if qns is None:
      return False
    try:
      note_seq.infer_chords_for_sequence(qns)
    except note_seq.ChordInferenceError:
      return False
    ns.text_annotations.extend(
        music_pb2.NoteSequence.TextAnnotation(annotation_type=_CHORD_SYMBOL, time=ta.time,
                                              text=ta.text)
        for ta in qns.text_annotations if ta.annotation_type == _CHORD_SYMBOL)
    return True

  def _to_tensors(self, ns: music_pb2.NoteSequence, mode: Mode,
                  rng: np.random.Generator | None) -> ConverterTensors:
    ns = sequences_lib.apply_sustain_control_changes(ns)
    if (self.chord_encoder and not any(ta.annotation_type == _CHORD_SYMBOL
                                       for ta in ns.text_annotations)
        and not self._add_inferred_chords(ns)):
      return ConverterTensors()
    qpm = ns.tempos[0].qpm if ns.tempos else QPM
    hop_seconds = 60.0 * self.quarters_per_bar * self.hop_size_bars / qpm
    windows = sequences_lib.split_note_sequence(ns, hop_seconds)
    if self.first_subsequence_only and len(windows) > 1:
      return ConverterTensors()
    found = []
    for window in windows:
      qns = event_utils.quantize(window, self.steps_per_quarter, self.steps_per_bar)
      if qns is None:
        return ConverterTensors()
      got = self._window_tokens(qns, rng)
      if got is not None:
        found.append(got)
    # Magenta samples the windows before dropping those with too long segments.
    ids = list(range(len(found)))
    ids = sample_examples(ConverterTensors(ids, ids, ids, ids),
                          self.max_tensors_per_notesequence, mode, rng).lengths
    found = [found[i] for i in ids]
    out = ConverterTensors()
    no_chord = self.chord_encoder.encode_event(note_seq.NO_CHORD) if self.chord_encoder else 0
    for tokens, chord_ids in found:
      flat = self._flatten(tokens, self.input_depth, self.end_token_index)
      if flat is None:
        continue
      x, lengths = flat
      if chord_ids is None:
        c = np.zeros((len(x), 0), np.float32)
      else:
        c = self._flatten(chord_ids, self.control_depth, no_chord)[0]
      out.extend(ConverterTensors([x], [x], [c], [lengths]))
    return out

  # --- from_tensors

  def _decode_track(self, onehots: np.ndarray, chord_onehots: np.ndarray | None,
                    offset: int) -> tuple[performance_lib.MetricPerformance, list]:
    """One track chunk: its performance and the (time, chord) pairs of its events."""
    enc = self.performance_encoding
    tokens = np.argmax(onehots, axis=-1).tolist()
    if self.end_token_index in tokens:
      tokens = tokens[:tokens.index(self.end_token_index)]
    programs = [t - enc.num_classes for t in tokens if t >= enc.num_classes]
    kept = [i for i, t in enumerate(tokens) if t < enc.num_classes]
    program, is_drum = (programs[0], False) if programs else (0, False)
    if program == NUM_PROGRAMS:
      program, is_drum = 0, True
    track = performance_lib.MetricPerformance(
        quantized_sequence=None, steps_per_quarter=self.steps_per_quarter, start_step=0,
        num_velocity_bins=self.num_velocity_bins, program=program, is_drum=is_drum)
    for i in kept:
      track.append(enc.decode_event(tokens[i]))
    timed = []
    if chord_onehots is not None:
      chord_ids = np.argmax(chord_onehots, axis=-1)
      figures = [self.chord_encoder.decode_event(int(chord_ids[i])) for i in kept]
      chunk_steps = self.steps_per_bar * self.chunk_size_bars
      seconds_per_step = 60.0 / (self.steps_per_quarter * QPM)
      times = [(offset + s) * seconds_per_step for s in track.steps if s < chunk_steps]
      timed = list(zip(times, figures))
    return track, timed

  def _to_sequence(self, sample: np.ndarray, controls: np.ndarray | None
                   ) -> music_pb2.NoteSequence:
    n, chunk_steps = self.max_events_per_instrument, self.steps_per_bar * self.chunk_size_bars
    seg = sample.reshape(self.num_chunks, self.max_num_instruments, n, -1)
    ctl = None if controls is None else controls.reshape(
        self.num_chunks, self.max_num_instruments, n, -1)
    tracks: list[performance_lib.MetricPerformance | None] = [None] * self.max_num_instruments
    timed_chords = []
    for c in range(self.num_chunks):
      for i in range(self.max_num_instruments):
        track, timed = self._decode_track(seg[c, i], None if ctl is None else ctl[c, i],
                                          c * chunk_steps)
        timed_chords += timed
        track.set_length(chunk_steps)
        if tracks[i] is None:
          tracks[i] = track
        else:
          for e in track:
            tracks[i].append(e)
    seq = music_pb2.NoteSequence(ticks_per_quarter=note_seq.STANDARD_PPQ)
    seq.tempos.add().qpm = QPM
    for i, track in enumerate(tracks):
      seq.notes.extend(track.to_sequence(instrument=i, qpm=QPM).notes)
    if seq.notes:
      seq.total_time = max(note.end_time for note in seq.notes)
    if timed_chords:
      times, figures = zip(*sorted(timed_chords))
      chords_lib.add_chords_to_sequence(seq, figures, times)
    return seq

  def from_tensors(self, samples: Sequence[np.ndarray],
                   controls: Sequence[np.ndarray] | None = None
                   ) -> list[music_pb2.NoteSequence]:
    """Flattened samples ``[segments * events, depth]`` -> one NoteSequence each."""
    use_chords = self.chord_encoder is not None and controls is not None
    return [self._to_sequence(np.asarray(s), np.asarray(controls[k]) if use_chords else None)
            for k, s in enumerate(samples)]
