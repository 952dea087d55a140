"""DrumsConverter: Magenta golden tensors, Groove round trips, hand-built cases."""

import dataclasses
import json

import note_seq
import numpy as np
import pytest
from note_seq.protobuf import music_pb2

from flax_musicvae.data.converter import Mode
from flax_musicvae.data.drums import (FULL_DRUM_PITCH_CLASSES, REDUCED_DRUM_PITCH_CLASSES,
                                      DrumsConverter)

STEP = 0.125
CAT_DRUMS = DrumsConverter(max_bars=100, slice_bars=2, roll_input=True)
ONE_HOT = DrumsConverter(max_tensors_per_notesequence=None)
GROOVE_FILES = [
    "drummer1/session1/100_neworleans-secondline_94_beat_4-4.mid",
    "drummer1/session1/1_funk_80_beat_4-4.mid",
    "drummer1/session1/102_funk_95_beat_4-4.mid",
    "drummer7/eval_session/1_funk-groove1_138_beat_4-4.mid",
    "drummer3/session1/10_rock_105_beat_4-4.mid",
]


def drums(*hits, velocity=80):
  """Drum NoteSequence from (pitch, step) hits at 120 qpm, 4/4."""
  ns = music_pb2.NoteSequence(ticks_per_quarter=220)
  ns.tempos.add(qpm=120.0)
  ns.time_signatures.add(numerator=4, denominator=4)
  for pitch, step in hits:
    ns.notes.add(pitch=pitch, velocity=velocity, start_time=step * STEP,
                 end_time=(step + 1) * STEP, is_drum=True, instrument=9)
  ns.total_time = max(n.end_time for n in ns.notes)
  return ns


def labels(tensor):
  return np.argmax(tensor, axis=-1).tolist()


def test_golden_cat_drums_2bar_small(golden_dir, groove_dir):
  golden = np.load(golden_dir / "cat-drums_2bar_small" / "golden.npz")
  meta = json.loads((golden_dir / "cat-drums_2bar_small" / "meta.json").read_text())
  inputs, outputs = [], []
  for name in meta["inputs_source"]:
    tensors = CAT_DRUMS.to_tensors(note_seq.midi_file_to_note_sequence(groove_dir / name),
                                   Mode.EVAL)
    inputs.append(tensors.inputs[0])
    outputs.append(tensors.outputs[0])
  np.testing.assert_array_equal(np.stack(inputs), golden["enc_inputs"])
  np.testing.assert_array_equal(np.stack(outputs), golden["x_target"])
  assert (CAT_DRUMS.input_depth, CAT_DRUMS.output_depth) == (10, 512)


ROUND_TRIP_CONVERTERS = {
    "cat": dataclasses.replace(CAT_DRUMS, max_tensors_per_notesequence=None),
    "nade_full": DrumsConverter(slice_bars=2, roll_input=True, roll_output=True,
                                pitch_classes=FULL_DRUM_PITCH_CLASSES,
                                max_tensors_per_notesequence=None),
    "end_token": DrumsConverter(slice_bars=4, add_end_token=True,
                                max_tensors_per_notesequence=None),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", ROUND_TRIP_CONVERTERS)
@pytest.mark.parametrize("path", GROOVE_FILES)
def test_groove_window_round_trip(groove_dir, path, name):
  """Every window decodes to a drum track whose only window encodes identically."""
  converter = ROUND_TRIP_CONVERTERS[name]
  tensors = converter.to_tensors(note_seq.midi_file_to_note_sequence(groove_dir / path),
                                 Mode.EVAL)
  assert len(tensors)
  for inputs, outputs in zip(tensors.inputs, tensors.outputs):
    again = converter.to_tensors(converter.from_tensors([outputs])[0], Mode.EVAL)
    assert len(again) == 1
    np.testing.assert_array_equal(again.inputs[0], inputs)
    np.testing.assert_array_equal(again.outputs[0], outputs)


def test_reduced_class_mapping_and_one_hot_index():
  # kick 35 -> class 0, snare 40 -> 1, closed hh 44 -> 2, ride 59 -> 8; 99 is no drum.
  ns = drums((35, 0), (40, 0), (44, 1), (59, 2), (99, 3), (36, 4), (42, 4), (51, 4))
  (seq,) = ONE_HOT.to_tensors(ns, Mode.EVAL).outputs
  assert seq.shape == (16, 512)
  assert labels(seq)[:5] == [1 + 2, 4, 256, 0, 1 + 4 + 256]
  decoded = ONE_HOT.from_tensors([seq])[0]
  hits = sorted((round(n.start_time / STEP), n.pitch) for n in decoded.notes)
  assert hits == [(0, 36), (0, 38), (1, 42), (2, 51), (4, 36), (4, 42), (4, 51)]
  assert all(n.is_drum and n.instrument == 9 and n.velocity == 80 for n in decoded.notes)
  assert [c[0] for c in REDUCED_DRUM_PITCH_CLASSES] == [36, 38, 42, 46, 45, 48, 50, 49, 51]


def test_roll_input_has_nor_bit():
  ns = drums((36, 0), (38, 2), (46, 2))
  (inputs,) = CAT_DRUMS.to_tensors(drums((36, 0), (38, 2), (46, 2), (36, 16)),
                                   Mode.EVAL).inputs
  assert inputs.shape == (32, 10)
  np.testing.assert_array_equal(inputs[0], [1, 0, 0, 0, 0, 0, 0, 0, 0, 0])
  np.testing.assert_array_equal(inputs[1], [0] * 9 + [1])
  np.testing.assert_array_equal(inputs[2], [0, 1, 0, 1, 0, 0, 0, 0, 0, 0])
  assert inputs[:, 9].sum() == 32 - 3
  roll = DrumsConverter(roll_output=True, max_tensors_per_notesequence=None)
  (outputs,) = roll.to_tensors(ns, Mode.EVAL).outputs
  assert outputs.shape == (16, 9) and outputs[2].tolist() == [0, 1, 0, 1, 0, 0, 0, 0, 0]


def test_full_classes_roll():
  converter = DrumsConverter(pitch_classes=FULL_DRUM_PITCH_CLASSES, roll_input=True,
                             roll_output=True, max_tensors_per_notesequence=None)
  assert (converter.input_depth, converter.output_depth) == (62, 61)
  (outputs,) = converter.to_tensors(drums((35, 0), (82, 1)), Mode.EVAL).outputs
  assert np.flatnonzero(outputs[0]).tolist() == [1] and np.flatnonzero(outputs[1]).tolist() == [60]
  decoded = converter.from_tensors([outputs])[0]
  assert sorted(n.pitch for n in decoded.notes) == [35, 82]
  with pytest.raises(ValueError, match="roll_input=roll_output=True"):
    DrumsConverter(pitch_classes=FULL_DRUM_PITCH_CLASSES)


def test_gap_bars_split_tracks_and_dedupe():
  # Hits in bars 0 and 2 only: the empty bar 1 (gap of 31 steps) ends the track.
  ns = drums((36, 0), (36, 32))
  tracks = ONE_HOT.to_tensors(ns, Mode.EVAL)
  assert len(tracks) == 1  # two identical 1-bar tracks, de-duplicated
  assert labels(tracks.outputs[0]) == [1] + [0] * 15
  joined = dataclasses.replace(ONE_HOT, gap_bars=2).to_tensors(ns, Mode.EVAL)
  assert [len(s) for s in joined.outputs] == [48]


def test_at_most_five_windows_and_end_token():
  hits = [(p, 16 * b + s) for b in range(12) for p, s in ((36, 0), (38, 1 + b), (42, 8))]
  ns = drums(*hits)
  assert len(CAT_DRUMS.to_tensors(ns, Mode.EVAL)) == 5
  everything = dataclasses.replace(CAT_DRUMS, max_tensors_per_notesequence=None)
  assert len(everything.to_tensors(ns, Mode.EVAL)) == 11
  end = DrumsConverter(add_end_token=True, roll_input=True, max_tensors_per_notesequence=None)
  assert (end.input_depth, end.output_depth, end.end_token) == (11, 513, 512)
  (inputs,) = end.to_tensors(drums((36, 0)), Mode.EVAL).inputs
  (outputs,) = end.to_tensors(drums((36, 0)), Mode.EVAL).outputs
  assert inputs.shape == (17, 11) and inputs[-1].tolist() == [0] * 9 + [1, 0]
  assert labels(outputs)[-1] == 512
  decoded = end.from_tensors([outputs])[0]
  assert [(n.pitch, n.start_time) for n in decoded.notes] == [(36, 0.0)]


def test_non_drum_and_silent_notes_ignored():
  ns = drums((36, 0), (38, 1), (42, 2))
  ns.notes[1].is_drum = False
  ns.notes[2].velocity = 0
  (seq,) = ONE_HOT.to_tensors(ns, Mode.EVAL).outputs
  assert labels(seq) == [1] + [0] * 15
