"""OneHotMelodyConverter: Magenta golden tensors, real-tune round trips, hand-built cases."""

import dataclasses

import note_seq
import numpy as np
import pytest
from conftest import FIXTURES
from note_seq.protobuf import music_pb2

from flax_musicvae.data import event_utils
from flax_musicvae.data.converter import Mode
from flax_musicvae.data.melody import (MEL_PROGRAMS, NO_EVENT, NOTE_OFF,
                                       OneHotMelodyConverter, extract_melodies)

STEP = 0.125  # seconds per 16th note at 120 qpm
MEL_2BAR = OneHotMelodyConverter(valid_programs=MEL_PROGRAMS, max_bars=100, slice_bars=2)
MEL_16BAR = OneHotMelodyConverter(max_bars=100, slice_bars=16)
WHOLE = OneHotMelodyConverter(max_tensors_per_notesequence=None)
FOLK = sorted((FIXTURES / "melodies").glob("*.mid"))


def sequence(*notes, qpm=120.0, total_steps=None):
  """NoteSequence from (pitch, start_step, end_step[, program[, instrument]]) tuples."""
  ns = music_pb2.NoteSequence(ticks_per_quarter=220)
  ns.tempos.add(qpm=qpm)
  ns.time_signatures.add(numerator=4, denominator=4)
  for pitch, start, end, *rest in notes:
    program, instrument = (list(rest) + [0, 0])[:2] if rest else (0, 0)
    ns.notes.add(pitch=pitch, velocity=80, start_time=start * STEP, end_time=end * STEP,
                 program=program, instrument=instrument)
  ns.total_time = max([n.end_time for n in ns.notes] + [(total_steps or 0) * STEP])
  return ns


def classes(tensor):
  return np.argmax(tensor, axis=-1).tolist()


def synthetic_melody(seed, bars=16, steps_per_quarter=4, qpm=120.0):
  """The deterministic melody generator of the reference make_golden.py."""
  rs = np.random.RandomState(seed)
  ns = note_seq.NoteSequence()
  ns.tempos.add(qpm=qpm)
  ns.time_signatures.add(numerator=4, denominator=4)
  ns.ticks_per_quarter = 220
  step = 60.0 / qpm / steps_per_quarter
  total_steps = bars * 4 * steps_per_quarter
  t = 0
  pitch = 60 + rs.randint(-5, 6)
  while t < total_steps:
    dur = min(int(rs.choice([1, 2, 2, 4, 4, 8])), total_steps - t)
    if rs.rand() < 0.85:
      pitch = int(np.clip(pitch + rs.randint(-4, 5), 48, 84))
      ns.notes.add(pitch=pitch, velocity=80, start_time=t * step,
                   end_time=(t + dur) * step, instrument=0, program=0)
    t += dur
  ns.total_time = total_steps * step
  return ns


def test_golden_hierdec_mel_16bar(golden_dir):
  golden = np.load(golden_dir / "hierdec-mel_16bar" / "golden.npz")
  inputs, outputs, seed = [], [], 1000
  while len(inputs) < 4:
    tensors = MEL_16BAR.to_tensors(synthetic_melody(seed), Mode.EVAL)
    inputs += tensors.inputs[:4 - len(inputs)]
    outputs += tensors.outputs[:4 - len(outputs)]
    seed += 1
  np.testing.assert_array_equal(np.stack(inputs), golden["enc_inputs"])
  np.testing.assert_array_equal(np.stack(outputs), golden["x_target"])
  assert MEL_16BAR.input_depth == golden["enc_inputs"].shape[-1] == 90


def quantized(ns):
  return note_seq.quantize_note_sequence(ns, 4)


@pytest.mark.parametrize("path", FOLK, ids=lambda p: p.stem)
def test_whole_melody_round_trip(path):
  ns = note_seq.midi_file_to_note_sequence(path)
  tensors = WHOLE.to_tensors(ns, Mode.EVAL)
  assert len(tensors)
  for sample in tensors.outputs:
    decoded = WHOLE.from_tensors([sample])[0]
    again = WHOLE.to_tensors(decoded, Mode.EVAL)
    assert len(again) == 1
    np.testing.assert_array_equal(again.outputs[0], sample)


@pytest.mark.parametrize("converter", [MEL_2BAR, MEL_16BAR], ids=["2bar", "16bar"])
@pytest.mark.parametrize("path", FOLK, ids=lambda p: p.stem)
def test_window_round_trip(path, converter):
  """A window that starts with a note decodes to a tune whose only window is itself."""
  uncapped = dataclasses.replace(converter, max_tensors_per_notesequence=None)
  tensors = uncapped.to_tensors(note_seq.midi_file_to_note_sequence(path), Mode.EVAL)
  checked = 0
  for sample in tensors.outputs:
    first_bar = np.argmax(sample[:16], axis=-1)
    if not np.any(first_bar >= 2):
      continue
    again = uncapped.to_tensors(uncapped.from_tensors([sample])[0], Mode.EVAL)
    assert len(again) == 1
    np.testing.assert_array_equal(again.inputs[0], sample)
    checked += 1
  assert checked


def test_encoding_classes_and_decode():
  ns = sequence((21, 0, 4), (108, 4, 6), (60, 8, 16))
  (seq,) = WHOLE.to_tensors(ns, Mode.EVAL).outputs
  expected = [2, 0, 0, 0, 89, 0, 1, 0, 41] + [0] * 7
  assert classes(seq) == expected
  decoded = WHOLE.from_tensors([seq])[0]
  assert [(n.pitch, n.start_time, n.end_time, n.velocity) for n in decoded.notes] == [
      (21, 0.0, 0.5, 80), (108, 0.5, 0.75, 80), (60, 1.0, 2.0, 80)]


def test_polyphony_keeps_highest_note_or_skips():
  ns = sequence((60, 0, 4), (64, 0, 4), (62, 4, 8), (67, 8, 16))
  (seq,) = WHOLE.to_tensors(ns, Mode.EVAL).outputs
  assert classes(seq)[:9] == [64 - 19, 0, 0, 0, 62 - 19, 0, 0, 0, 67 - 19]
  strict = dataclasses.replace(WHOLE, skip_polyphony=True)
  assert len(strict.to_tensors(ns, Mode.EVAL)) == 0


def test_later_overlapping_note_cuts_the_sounding_one():
  ns = sequence((60, 0, 12), (62, 4, 6))
  (seq,) = WHOLE.to_tensors(ns, Mode.EVAL).outputs
  assert classes(seq) == [41, 0, 0, 0, 43, 0, 1] + [0] * 9


def test_gap_bars_split_melodies():
  # Silence from step 4 to step 24 (20 steps > 1 bar) ends the first melody.
  ns = sequence((60, 0, 4), (62, 24, 28))
  notes = event_utils.NoteArrays.from_sequence(quantized(ns))
  melodies = extract_melodies(notes, 16, gap_bars=1, max_steps=None)
  assert [(m.start_step, len(m.events)) for m in melodies] == [(0, 16), (16, 16)]
  assert melodies[1].events[8] == 62 and melodies[0].events[4] == NOTE_OFF
  single = extract_melodies(notes, 16, gap_bars=None, max_steps=None)
  assert [(m.start_step, len(m.events)) for m in single] == [(0, 32)]
  assert len(dataclasses.replace(WHOLE, gap_bars=2).to_tensors(ns, Mode.EVAL)) == 1


def test_max_bars_truncates_and_windows_hop_one_bar():
  notes = [(60 + (i % 5), 4 * i, 4 * i + 2) for i in range(20)]  # 5 bars
  ns = sequence(*notes)
  assert [len(s) for s in dataclasses.replace(WHOLE, max_bars=3).to_tensors(
      ns, Mode.EVAL).outputs] == [48]
  windows = dataclasses.replace(MEL_2BAR, max_tensors_per_notesequence=None,
                                dedupe_event_lists=False).to_tensors(ns, Mode.EVAL)
  assert len(windows) == 4  # 5 bars, 2-bar windows, 1-bar hop


def test_dedupe_identical_windows():
  bar = [(60, 0, 4), (64, 4, 8), (67, 8, 12), (72, 12, 16)]
  ns = sequence(*[(p, s + 16 * b, e + 16 * b) for b in range(4) for p, s, e in bar])
  uncapped = dataclasses.replace(MEL_2BAR, max_tensors_per_notesequence=None)
  assert len(uncapped.to_tensors(ns, Mode.EVAL)) == 1
  assert len(dataclasses.replace(uncapped, dedupe_event_lists=False).to_tensors(
      ns, Mode.EVAL)) == 3


def test_program_filter_and_pitch_range():
  ns = sequence((60, 0, 4, 40), (62, 4, 8, 40), (64, 0, 16, 0), (110, 0, 8, 0))
  (seq,) = WHOLE.to_tensors(ns, Mode.EVAL).outputs
  assert classes(seq)[:4] == [64 - 19, 0, 0, 0]  # pitch 110 dropped
  mel_only = dataclasses.replace(WHOLE, valid_programs=MEL_PROGRAMS)
  violin = sequence((60, 0, 4, 40))
  assert len(mel_only.to_tensors(violin, Mode.EVAL)) == 0
  assert len(WHOLE.to_tensors(violin, Mode.EVAL)) == 1


def test_end_token_and_pad_to_total_time():
  ns = sequence((60, 20, 24), total_steps=64)
  # The split on time changes would cut total_time back to the last note's end.
  converter = dataclasses.replace(WHOLE, add_end_token=True, pad_to_total_time=True,
                                  presplit_on_time_changes=False)
  assert converter.output_depth == 91 and converter.end_token == 90
  (seq,) = converter.to_tensors(ns, Mode.EVAL).outputs
  assert seq.shape == (65, 91)
  assert classes(seq)[19:26] == [0, 41, 0, 0, 0, 1, 0] and classes(seq)[-1] == 90
  decoded = converter.from_tensors([seq])[0]
  assert [(n.start_time, n.end_time) for n in decoded.notes] == [(20 * STEP, 24 * STEP)]


def test_sliced_windows_clean_leading_note_off():
  # Window starting at bar 1 opens with the note-off of a note from bar 0.
  ns = sequence((60, 0, 16), (62, 20, 24), (64, 32, 48))
  windows = dataclasses.replace(MEL_2BAR, slice_bars=1, max_tensors_per_notesequence=None,
                                dedupe_event_lists=False).to_tensors(ns, Mode.EVAL)
  assert [classes(w)[:5] for w in windows.outputs] == [
      [41, 0, 0, 0, 0], [0, 0, 0, 0, 43], [45, 0, 0, 0, 0]]


def test_train_mode_samples_at_most_five_and_needs_rng():
  pitches = np.random.RandomState(0).randint(55, 80, size=80).tolist()
  notes = [(p, 2 * i, 2 * i + 1) for i, p in enumerate(pitches)]  # 10 bars, all different
  ns = sequence(*notes)
  converter = dataclasses.replace(MEL_2BAR, max_tensors_per_notesequence=5)
  everything = dataclasses.replace(converter, max_tensors_per_notesequence=None)
  all_windows = {w.tobytes() for w in everything.to_tensors(ns, Mode.EVAL).outputs}
  sampled = converter.to_tensors(ns, Mode.TRAIN, np.random.default_rng(0))
  assert len(all_windows) > 5 and len(sampled) == 5
  assert {w.tobytes() for w in sampled.outputs} <= all_windows
  with pytest.raises(ValueError, match="rng"):
    converter.to_tensors(ns, Mode.TRAIN)


def test_not_four_four_gives_nothing():
  ns = sequence((60, 0, 16))
  ns.time_signatures[0].numerator = 3
  assert len(WHOLE.to_tensors(ns, Mode.EVAL)) == 0


def test_drum_notes_are_not_melody():
  ns = sequence((60, 0, 4), (62, 4, 8))
  ns.notes[1].is_drum = True
  (seq,) = WHOLE.to_tensors(ns, Mode.EVAL).outputs
  assert classes(seq)[:8] == [41, 0, 0, 0, 1, 0, 0, 0]
  assert set(classes(seq)[8:]) == {0} and NO_EVENT == -2


def test_bad_options_raise():
  with pytest.raises(ValueError, match="chord_encoding"):
    OneHotMelodyConverter(chord_encoding="seventh")
  with pytest.raises(ValueError, match="min_pitch"):
    OneHotMelodyConverter(min_pitch=90, max_pitch=60)


PICKUP_TUNE = """X:1
T:Pickup test
M:4/4
L:1/8
K:G
D2|G2 B2 d2 g2|[GB]4 z2 A2-|A8|]
"""


def test_abc_tune_to_note_sequence():
  """Pickup shifted onto the bar grid, chord notes kept, tied notes merged."""
  music21 = pytest.importorskip("music21")
  from flax_musicvae.pipelines import folk_melodies  # pylint: disable=import-outside-toplevel
  score = music21.converter.parseData(PICKUP_TUNE, format="abc")
  ns = folk_melodies.score_to_note_sequence(score, collection="test", filename="t.abc")
  assert [(n.pitch, n.start_time, n.end_time) for n in ns.notes] == [
      (62, 1.5, 2.0), (67, 2.0, 2.5), (71, 2.5, 3.0), (74, 3.0, 3.5), (79, 3.5, 4.0),
      (67, 4.0, 5.0), (71, 4.0, 5.0), (69, 5.5, 8.0)]
  assert [(t.time, t.numerator, t.denominator) for t in ns.time_signatures] == [(0.0, 4, 4)]
  assert ns.sequence_metadata.title == "Pickup test" and ns.collection_name == "test"
  (seq,) = WHOLE.to_tensors(ns, Mode.EVAL).outputs
  assert classes(seq)[12:17] == [62 - 19, 0, 0, 0, 67 - 19]  # pickup on beat 4 of bar 0


def test_folk_cli_help():
  pytest.importorskip("music21")
  from flax_musicvae.pipelines import folk_melodies  # pylint: disable=import-outside-toplevel
  with pytest.raises(SystemExit) as exit_info:
    folk_melodies.main(["--help"])
  assert exit_info.value.code == 0
  with pytest.raises(ValueError, match="no collection named"):
    folk_melodies.corpus_files(["noSuchCollection"])
