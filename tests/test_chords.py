"""Triad chord classes, per-step chords, inference, and chord-conditioned melodies."""

import dataclasses

import note_seq
import numpy as np
import pytest
from note_seq.protobuf import music_pb2

from flax_musicvae.data import chords
from flax_musicvae.data.converter import Mode
from flax_musicvae.data.melody import OneHotMelodyConverter

STEP = 0.125
CHORD = music_pb2.NoteSequence.TextAnnotation.CHORD_SYMBOL
MEL_CHORDS = OneHotMelodyConverter(max_bars=100, slice_bars=2, chord_encoding="triad",
                                   max_tensors_per_notesequence=None)


def melody(notes, chord_symbols=()):
  """4/4 sequence of (pitch, start_step, end_step) notes and (step, figure) chords."""
  ns = music_pb2.NoteSequence(ticks_per_quarter=220)
  ns.tempos.add(qpm=120.0)
  ns.time_signatures.add(numerator=4, denominator=4)
  for pitch, start, end in notes:
    ns.notes.add(pitch=pitch, velocity=80, start_time=start * STEP, end_time=end * STEP)
  for step, figure in chord_symbols:
    ns.text_annotations.add(time=step * STEP, text=figure, annotation_type=CHORD)
  ns.total_time = max(n.end_time for n in ns.notes)
  return ns


ARPEGGIOS = [(p, 4 * i, 4 * i + 4) for i, p in enumerate([60, 64, 67, 72, 67, 71, 74, 79])]


def test_classes_match_note_seq_triad_encoding():
  reference = note_seq.TriadChordOneHotEncoding()
  for index in range(chords.NUM_TRIAD_CLASSES):
    figure = chords.triad_figure(index)
    assert chords.triad_class(figure) == index == reference.encode_event(figure)
  for figure in ["C7", "Cm7", "Bbdim", "F#aug", "Ebmaj7", "G/B"]:
    assert chords.triad_class(figure) == reference.encode_event(figure)
  assert [chords.triad_figure(i) for i in (0, 1, 13, 25, 37, 48)] == [
      "N.C.", "C", "Cm", "Caug", "Cdim", "Bdim"]


def test_bad_chords_raise():
  with pytest.raises(chords.ChordEncodingError, match="not a standard triad"):
    chords.triad_class("Csus4")
  with pytest.raises(chords.ChordEncodingError, match="cannot parse"):
    chords.triad_class("not a chord")
  with pytest.raises(ValueError, match="triad chord class"):
    chords.triad_figure(49)


def test_chords_per_step_holds_each_chord_until_the_next():
  qns = note_seq.quantize_note_sequence(
      melody([(60, 0, 16)], [(4, "C"), (8, "G"), (8, "G"), (12, "Am")]), 4)
  ids, figures = chords.chords_per_step(qns)
  assert [figures[i] for i in ids] == ["N.C."] * 4 + ["C"] * 4 + ["G"] * 4 + ["Am"] * 4
  past_end = chords.window_chords(ids, 12, 8)
  assert [figures[i] for i in past_end] == ["Am"] * 8
  coincident = note_seq.quantize_note_sequence(
      melody([(60, 0, 16)], [(4, "C"), (4, "G")]), 4)
  with pytest.raises(chords.CoincidentChordsError):
    chords.chords_per_step(coincident)


def test_inferred_chords_become_controls():
  tensors = MEL_CHORDS.to_tensors(melody(ARPEGGIOS), Mode.EVAL)
  assert MEL_CHORDS.control_depth == 49 and len(tensors) == 1
  (controls,) = tensors.controls
  assert controls.shape == (32, 49) and np.all(controls.sum(axis=1) == 1)
  inferred = np.argmax(controls, axis=-1)
  assert set(inferred[:16]) == {chords.triad_class("C")}
  assert set(inferred[16:]) == {chords.triad_class("G")}


def test_given_chords_are_used_and_decoded():
  ns = melody(ARPEGGIOS, [(0, "Am"), (16, "Bdim")])
  tensors = MEL_CHORDS.to_tensors(ns, Mode.EVAL)
  (controls,) = tensors.controls
  assert np.argmax(controls, axis=-1).tolist() == [22] * 16 + [48] * 16
  decoded = MEL_CHORDS.from_tensors(tensors.outputs, tensors.controls)[0]
  annotations = [(ta.time, ta.text) for ta in decoded.text_annotations
                 if ta.annotation_type == CHORD]
  assert annotations == [(0.0, "Am"), (16 * STEP, "Bdim")]


def test_same_melody_under_different_chords_is_kept_twice():
  bar = [(60, 0, 8), (64, 8, 16)]
  notes = [(p, s + 16 * b, e + 16 * b) for b in range(4) for p, s, e in bar]
  plain = dataclasses.replace(MEL_CHORDS, chord_encoding=None)
  assert len(plain.to_tensors(melody(notes), Mode.EVAL)) == 1
  with_chords = melody(notes, [(0, "C"), (32, "F")])
  assert len(MEL_CHORDS.to_tensors(with_chords, Mode.EVAL)) == 3


def test_end_token_repeats_last_chord():
  converter = OneHotMelodyConverter(add_end_token=True, chord_encoding="triad",
                                    max_tensors_per_notesequence=None)
  (controls,) = converter.to_tensors(melody(ARPEGGIOS, [(0, "D")]), Mode.EVAL).controls
  assert controls.shape == (33, 49)
  assert set(np.argmax(controls, axis=-1).tolist()) == {chords.triad_class("D")}


def test_unencodable_chord_drops_the_sequence():
  assert len(MEL_CHORDS.to_tensors(melody(ARPEGGIOS, [(0, "Csus4")]), Mode.EVAL)) == 0
