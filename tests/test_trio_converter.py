"""TrioConverter: hand-built trios (part tensors, coverage rules, decode) and round trips."""

import dataclasses

import note_seq
import numpy as np
from conftest import FIXTURES
from note_seq.protobuf import music_pb2

from flax_musicvae.data.converter import Mode
from flax_musicvae.data.drums import DrumsConverter
from flax_musicvae.data.melody import OneHotMelodyConverter
from flax_musicvae.data.trio import ELECTRIC_BASS_PROGRAM, TrioConverter

STEP = 0.125
TRIO = TrioConverter(max_tensors_per_notesequence=None)
BAR = 16


def add_part(ns, instrument, program, pitches, bars, is_drum=False):
  """One note per beat on every bar in ``bars`` (pitch cycles through ``pitches``)."""
  for bar in bars:
    for beat in range(4):
      start = bar * BAR + 4 * beat
      ns.notes.add(pitch=pitches[(bar + beat) % len(pitches)], velocity=90,
                   start_time=start * STEP, end_time=(start + (1 if is_drum else 3)) * STEP,
                   instrument=instrument, program=program, is_drum=is_drum)
  ns.total_time = max(n.end_time for n in ns.notes)


def trio(bars=16, mel_bars=None, bass_bars=None, drum_bars=None, drums=True):
  ns = music_pb2.NoteSequence(ticks_per_quarter=220)
  ns.tempos.add(qpm=120.0)
  ns.time_signatures.add(numerator=4, denominator=4)
  everything = range(bars)
  add_part(ns, 0, 0, [72, 74, 76, 79, 81], mel_bars or everything)
  add_part(ns, 1, 33, [36, 40, 43], bass_bars or everything)
  if drums:
    add_part(ns, 9, 0, [36, 38, 42], drum_bars or everything, is_drum=True)
  return ns


def test_one_window_is_the_three_parts_side_by_side():
  ns = trio()
  tensors = TRIO.to_tensors(ns, Mode.EVAL)
  assert len(tensors) == 1 and tensors.inputs[0].shape == (256, 692)
  melody = OneHotMelodyConverter(gap_bars=None, max_tensors_per_notesequence=None)
  parts = []
  for instrument, converter in ((0, melody), (1, melody),
                                (9, DrumsConverter(max_tensors_per_notesequence=None))):
    part = music_pb2.NoteSequence()
    part.CopyFrom(ns)
    del part.notes[:]
    part.notes.extend(n for n in ns.notes if n.instrument == instrument)
    parts.append(converter.to_tensors(part, Mode.EVAL).outputs[0])
  np.testing.assert_array_equal(tensors.outputs[0], np.concatenate(parts, axis=-1))


def test_needs_all_three_instrument_types():
  assert len(TRIO.to_tensors(trio(drums=False), Mode.EVAL)) == 0
  no_bass = trio()
  for n in no_bass.notes:
    if n.instrument == 1:
      n.program = 0  # now a second melody instrument
  assert len(TRIO.to_tensors(no_bass, Mode.EVAL)) == 0
  mixed = trio()
  mixed.notes[-1].instrument = 1  # a drum note on the bass instrument: bass invalid
  assert len(TRIO.to_tensors(mixed, Mode.EVAL)) == 0


def test_windows_hop_one_bar_and_cross_product():
  ns = trio(bars=18)
  assert len(TRIO.to_tensors(ns, Mode.EVAL)) == 3
  add_part(ns, 2, 1, [60, 64], range(18))  # a second melody instrument
  assert len(TRIO.to_tensors(ns, Mode.EVAL)) == 6
  assert len(dataclasses.replace(TRIO, max_tensors_per_notesequence=5).to_tensors(
      ns, Mode.EVAL)) == 5


def test_gaps_up_to_gap_bars_are_covered():
  """Each bar counts as covered if the part plays within gap_bars of it (both sides)."""
  five_silent = [b for b in range(16) if not 6 <= b <= 10]
  assert len(TRIO.to_tensors(trio(mel_bars=five_silent), Mode.EVAL)) == 0
  four_silent = [b for b in range(16) if not 6 <= b <= 9]
  (seq,) = TRIO.to_tensors(trio(mel_bars=four_silent), Mode.EVAL).outputs
  assert np.all(np.argmax(seq[6 * BAR:10 * BAR, :90], axis=-1) <= 1)  # melody rests there
  wider = dataclasses.replace(TRIO, gap_bars=3)
  assert len(wider.to_tensors(trio(mel_bars=five_silent), Mode.EVAL)) == 1


def test_decode_assigns_bass_program_and_drums():
  ns = trio()
  (seq,) = TRIO.to_tensors(ns, Mode.EVAL).outputs
  decoded = TRIO.from_tensors([seq])[0]
  by_instrument = {}
  for n in decoded.notes:
    by_instrument.setdefault((n.instrument, n.program, n.is_drum), []).append(n)
  assert set(by_instrument) == {(0, 0, False), (1, ELECTRIC_BASS_PROGRAM, False), (9, 0, True)}
  assert len(by_instrument[(1, ELECTRIC_BASS_PROGRAM, False)]) == 64
  again = TRIO.to_tensors(decoded, Mode.EVAL)
  np.testing.assert_array_equal(again.outputs[0], seq)


def test_folk_tune_trio_round_trip():
  """A real tune as melody, its lowered copy as bass, and a drum beat."""
  tune = note_seq.midi_file_to_note_sequence(FIXTURES / "melodies" / "altdeu10_1.mid")
  ns = music_pb2.NoteSequence()
  ns.CopyFrom(tune)
  for n in tune.notes:
    bass = ns.notes.add()
    bass.CopyFrom(n)
    bass.pitch, bass.instrument, bass.program = n.pitch - 24, 1, 33
  bars = int(np.ceil(tune.total_time / (BAR * STEP)))
  add_part(ns, 9, 0, [36, 42, 38, 42], range(bars), is_drum=True)
  checked = 0
  for seq in TRIO.to_tensors(ns, Mode.EVAL).outputs:
    if np.argmax(seq[0, :90]) < 2 or np.argmax(seq[0, 90:180]) < 2:
      continue  # a window opening inside a held note cannot be told from a rest
    again = TRIO.to_tensors(TRIO.from_tensors([seq])[0], Mode.EVAL)
    assert len(again) == 1
    np.testing.assert_array_equal(again.outputs[0], seq)
    checked += 1
  assert checked


def test_chord_controls_follow_the_melody():
  converter = dataclasses.replace(TRIO, chord_encoding="triad")
  ns = trio()
  ns.text_annotations.add(time=0.0, text="C",
                          annotation_type=music_pb2.NoteSequence.TextAnnotation.CHORD_SYMBOL)
  ns.text_annotations.add(time=8 * BAR * STEP, text="Am",
                          annotation_type=music_pb2.NoteSequence.TextAnnotation.CHORD_SYMBOL)
  tensors = converter.to_tensors(ns, Mode.EVAL)
  (controls,) = tensors.controls
  assert controls.shape == (256, 49) and converter.control_depth == 49
  chords = np.argmax(controls, axis=-1)
  assert set(chords[:128]) == {1} and set(chords[128:]) == {9 + 13}
