"""GrooveConverter: golden parity with Magenta, hand-computed cases, round trips."""

import json

import note_seq
import numpy as np
import pytest
from note_seq.protobuf import music_pb2

from conftest import FIXTURES
from flax_musicvae.data.groove import (GrooveConverter, REDUCED_DRUM_PITCH_CLASSES,
                                       ROLAND_DRUM_PITCH_CLASSES)

GROOVE_FIXTURES = FIXTURES / "groove"
STEP = 0.125  # seconds per 16th note at 120 qpm
# Magenta's groovae_4bar converter.
GROOVAE_4BAR = GrooveConverter(
    split_bars=4, max_tensors_per_notesequence=20,
    pitch_classes=ROLAND_DRUM_PITCH_CLASSES,
    inference_pitch_classes=REDUCED_DRUM_PITCH_CLASSES)


def drums(notes, qpm=120.0, time_signature=(4, 4)):
  """NoteSequence of (pitch, velocity, start_time) drum hits."""
  ns = music_pb2.NoteSequence()
  ns.tempos.add(qpm=qpm)
  ns.time_signatures.add(numerator=time_signature[0], denominator=time_signature[1])
  for pitch, velocity, start in notes:
    ns.notes.add(pitch=pitch, velocity=velocity, start_time=start,
                 end_time=start + 0.05, is_drum=True, instrument=9)
  ns.total_time = max(n.end_time for n in ns.notes)
  return ns


def split(tensor):
  return np.split(tensor, 3, axis=-1)


# Snare on step 1 played 10% of a step early, two snares in step 4 (loudest wins),
# kick on step 0 and a hi-hat late on step 17 (second bar).
BASIC = drums([(36, 127, 0.0), (38, 100, STEP - 0.05 * STEP),
               (38, 50, 4 * STEP), (40, 90, 4 * STEP + 0.2 * STEP),
               (42, 64, 17 * STEP + 0.25 * STEP)])


def test_golden_groovae_4bar_inputs(golden_dir):
  golden = np.load(golden_dir / "groovae_4bar" / "golden.npz")
  meta = json.loads((golden_dir / "groovae_4bar" / "meta.json").read_text())
  for b, name in enumerate(meta["inputs_source"]):
    ns = note_seq.midi_file_to_note_sequence(str(GROOVE_FIXTURES / name))
    tensors = GROOVAE_4BAR.to_tensors(ns, "eval")
    np.testing.assert_array_equal(tensors.inputs[0], golden["enc_inputs"][b])
    np.testing.assert_array_equal(tensors.outputs[0], golden["x_target"][b])
    assert tensors.lengths[0] == golden["enc_lengths"][b] == 64


def test_hand_computed_encoding():
  t = GrooveConverter(split_bars=1).to_tensors(BASIC)
  assert len(t) == 2 and t.lengths == [16, 16]
  assert t.inputs[0].dtype == np.float32 and t.inputs[0].shape == (16, 27)
  hits, vels, offsets = split(np.concatenate(t.outputs))
  expected_hits = np.zeros((32, 9))
  expected_hits[[0, 1, 4, 17], [0, 1, 1, 2]] = 1
  np.testing.assert_array_equal(hits, expected_hits)
  np.testing.assert_allclose(vels[[0, 1, 4, 17], [0, 1, 1, 2]],
                             [1.0, 100 / 127, 90 / 127, 64 / 127], rtol=1e-6)
  # Early onsets give positive offsets, late ones negative: 2 * (grid - onset) / step.
  np.testing.assert_allclose(offsets[[0, 1, 4, 17], [0, 1, 1, 2]],
                             [0.0, 0.1, -0.4, -0.5], atol=1e-6)
  assert np.count_nonzero(vels) == 4 and np.count_nonzero(offsets) == 3
  np.testing.assert_array_equal(np.concatenate(t.inputs), np.concatenate(t.outputs))
  assert all(c.shape == (16, 0) for c in t.controls)


def test_windows_hop_and_empty_last_bar():
  whole = GrooveConverter().to_tensors(BASIC)
  assert whole.lengths == [32]
  # 2 bars, hop of one bar over 1-bar windows, and a 3-bar window that cannot fit.
  assert len(GrooveConverter(split_bars=1, hop_size=8).to_tensors(BASIC)) == 3
  assert len(GrooveConverter(split_bars=3).to_tensors(BASIC)) == 0
  # Only the first bar has notes: total_bars comes from the last onset.
  assert len(GrooveConverter(split_bars=2).to_tensors(drums([(36, 80, 0.0)]))) == 0


def test_max_tensors_per_notesequence_is_ignored():
  t = GrooveConverter(split_bars=1, max_tensors_per_notesequence=1).to_tensors(
      BASIC, "train", rng=np.random.default_rng(0))
  assert len(t) == 2


def test_humanize_zeroes_input_dynamics_and_timing():
  t = GrooveConverter(humanize=True).to_tensors(BASIC)
  in_hits, in_vels, in_offsets = split(t.inputs[0])
  out_hits, _, _ = split(t.outputs[0])
  np.testing.assert_array_equal(in_hits, out_hits)
  assert not in_vels.any() and not in_offsets.any()
  np.testing.assert_array_equal(t.outputs[0], GrooveConverter().to_tensors(BASIC).outputs[0])


def test_fixed_velocities_keeps_offsets():
  t = GrooveConverter(fixed_velocities=True).to_tensors(BASIC)
  in_hits, in_vels, in_offsets = split(t.inputs[0])
  out_hits, _, out_offsets = split(t.outputs[0])
  np.testing.assert_array_equal(in_hits, out_hits)
  np.testing.assert_array_equal(in_offsets, out_offsets)
  assert not in_vels.any()


def test_tapify_moves_loudest_hit_to_open_hihat():
  ns = drums([(36, 60, 0.0), (38, 110, 0.0 + 0.1 * STEP), (42, 30, 2 * STEP)])
  t = GrooveConverter(tapify=True).to_tensors(ns)
  in_hits, in_vels, in_offsets = split(t.inputs[0])
  assert np.array_equal(np.flatnonzero(in_hits.any(axis=0)), [3])
  np.testing.assert_array_equal(np.flatnonzero(in_hits[:, 3]), [0, 2])
  np.testing.assert_allclose(in_vels[[0, 2], 3], [110 / 127, 30 / 127], rtol=1e-6)
  np.testing.assert_allclose(in_offsets[[0, 2], 3], [-0.2, 0.0], atol=1e-6)
  np.testing.assert_array_equal(t.outputs[0], GrooveConverter().to_tensors(ns).outputs[0])


def test_add_instruments_removes_closed_hihat_from_inputs():
  t = GrooveConverter(add_instruments=[2]).to_tensors(BASIC)
  for inp, out in zip(split(t.inputs[0]), split(t.outputs[0])):
    assert not inp[:, 2].any() and out[:, 2].any()
    np.testing.assert_array_equal(np.delete(inp, 2, axis=1), np.delete(out, 2, axis=1))


def test_note_dropout_with_seeded_rng():
  ns = drums([(42, 10 + 3 * i, i * STEP) for i in range(32)])
  conv = GrooveConverter(max_note_dropout_probability=0.9)
  with pytest.raises(ValueError, match="rng"):
    conv.to_tensors(ns)
  t = conv.to_tensors(ns, rng=np.random.default_rng(7))
  again = conv.to_tensors(ns, rng=np.random.default_rng(7))
  np.testing.assert_array_equal(t.inputs[0], again.inputs[0])
  # The same draws done by hand: q ~ U(0, p), drop w.p. q * max(0.2, 1 - velocity).
  rng = np.random.default_rng(7)
  velocities = np.round(t.outputs[0][:, 9:18].astype(np.float64) * 127) / 127
  q = rng.uniform(0.0, 0.9)
  keep = 1 - rng.binomial(1, np.maximum(0.2, 1 - velocities) * q)
  np.testing.assert_array_equal(t.inputs[0], t.outputs[0] * np.tile(keep, 3))
  assert 0 < t.inputs[0][:, :9].sum() < 32


def test_hits_as_controls():
  conv = GrooveConverter(split_bars=1, hits_as_controls=True)
  assert conv.control_depth == 9
  t = conv.to_tensors(BASIC)
  for controls, outputs in zip(t.controls, t.outputs):
    assert controls.shape == (16, 9)
    np.testing.assert_array_equal(controls, outputs[:, :9])


def test_reduced_pitch_classes_in_infer_mode():
  # 35 is a GM kick (not a Roland pitch); 58 is a Roland low tom but a GM crash.
  ns = drums([(35, 80, 0.0), (58, 80, STEP)])
  with pytest.raises(ValueError, match=r"\[35\]"):
    GROOVAE_4BAR.to_tensors(ns, "eval")
  hits, _, _ = split(GrooveConverter(
      inference_pitch_classes=REDUCED_DRUM_PITCH_CLASSES).to_tensors(ns, "infer").outputs[0])
  assert hits[0, 0] == 1 and hits[1, 7] == 1 and hits.sum() == 2
  eval_hits, _, _ = split(GrooveConverter().to_tensors(drums([(58, 80, STEP)])).outputs[0])
  assert eval_hits[1, 4] == 1


@pytest.mark.parametrize("time_signature", [(3, 4), (6, 8), (7, 8)])
def test_non_4_4_gives_no_examples(time_signature):
  ns = drums([(36, 80, i * STEP) for i in range(40)], time_signature=time_signature)
  assert len(GrooveConverter(split_bars=1).to_tensors(ns)) == 0


def test_tempo_change_gives_no_examples():
  ns = drums([(36, 80, i * STEP) for i in range(40)])
  ns.tempos.add(qpm=90.0, time=1.0)
  assert len(GrooveConverter(split_bars=1).to_tensors(ns)) == 0


def test_bad_options_raise():
  with pytest.raises(ValueError, match="hop_size"):
    GrooveConverter(hop_size=4)
  with pytest.raises(ValueError, match="same number of pitch classes"):
    GrooveConverter(inference_pitch_classes=REDUCED_DRUM_PITCH_CLASSES[:8])
  with pytest.raises(ValueError, match="shape"):
    GrooveConverter().from_tensors([np.zeros((16, 26))])


def test_from_tensors_hand_computed():
  sample = np.zeros((16, 27), np.float32)
  sample[2, [1, 10, 19]] = [1.0, 0.5, 0.4]  # snare, velocity 63.5 -> 64, early
  sample[5, [0, 9, 18]] = [0.9, 1.2, -3.0]  # kick, clipped velocity and offset
  sample[7, [4, 13]] = [0.4, 1.0]  # below the hit threshold
  ns_infer, = GrooveConverter(
      inference_pitch_classes=REDUCED_DRUM_PITCH_CLASSES).from_tensors([sample])
  ns_eval, = GrooveConverter().from_tensors([sample], mode="eval")
  assert ns_infer.tempos[0].qpm == 120
  notes = [(n.pitch, n.velocity, n.start_time, n.end_time, n.is_drum, n.instrument)
           for n in ns_eval.notes]
  np.testing.assert_allclose([n[2:4] for n in notes],
                             [(1.8 * STEP, 2.8 * STEP), (5.5 * STEP, 6.5 * STEP)],
                             rtol=1e-6)
  assert [n[:2] for n in notes] == [(38, 64), (36, 127)]
  assert all(n[4] and n[5] == 9 for n in notes)
  assert [n.pitch for n in ns_infer.notes] == [38, 36]
  sample[2, 4] = 1.0  # low tom: first pitch 43 (Roland) vs 45 (General MIDI)
  assert 45 in [n.pitch for n in GrooveConverter(
      inference_pitch_classes=REDUCED_DRUM_PITCH_CLASSES).from_tensors([sample])[0].notes]


@pytest.mark.parametrize("name", [
    "drummer1/session1/100_neworleans-secondline_94_beat_4-4.mid",
    "drummer1/session1/145_latin-brazilian-baiao_95_beat_4-4.mid",
    "drummer6/session3/2_rock_100_beat_4-4.mid"])
def test_round_trip_real_groove(name):
  ns = note_seq.midi_file_to_note_sequence(str(GROOVE_FIXTURES / name))
  conv = GrooveConverter(split_bars=2)
  windows = conv.to_tensors(ns).outputs
  assert len(windows) > 3
  whole = GrooveConverter()
  for window in windows:
    decoded, = conv.from_tensors([window], mode="eval")
    again = whole.to_tensors(decoded).outputs[0]
    padded = np.zeros_like(window)
    padded[:len(again)] = again[:len(window)]
    hits, vels, offsets = split(window)
    # A hit half a step late (offset -1) decodes onto the quantization boundary and
    # re-encodes on the next step; compare everything else.
    moved = (hits == 1) & (offsets < -0.999)
    same = ~(moved | np.roll(moved, 1, axis=0))
    for got, want in zip(split(padded), (hits, vels)):
      np.testing.assert_array_equal(got[same], want[same])
    np.testing.assert_allclose(split(padded)[2][same], offsets[same], atol=1e-5)
    # On the grid (offsets 0) the round trip is exact.
    quantized = np.concatenate([hits, vels, np.zeros_like(offsets)], axis=1)
    decoded, = conv.from_tensors([quantized], mode="eval")
    again = whole.to_tensors(decoded).outputs[0]
    np.testing.assert_array_equal(again, quantized[:len(again)])
    assert not quantized[len(again):].any()
