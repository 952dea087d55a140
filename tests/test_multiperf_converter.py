"""MultiInstrumentPerformanceConverter: Magenta's own tensors and decodes (golden), a real
chorale's round trip, hand-built rejections, transposition, and a few training steps."""

import sys

import numpy as np
import pytest
from conftest import FIXTURES, ROOT
from note_seq.protobuf import music_pb2

from flax_musicvae import config_lib
from flax_musicvae import steps
from flax_musicvae.data import augment
from flax_musicvae.data.converter import Mode
from flax_musicvae.data.multiperf import MultiInstrumentPerformanceConverter

sys.path.insert(0, str(ROOT / "bench"))
import multiperf_golden  # noqa: E402  pylint: disable=wrong-import-position

GOLDEN = FIXTURES / "multiperf" / "golden.npz"
MED = config_lib.make_converter(config_lib.load("hier_multiperf_vel_1bar_med").data)
MED_CHORDS = config_lib.make_converter(
    config_lib.load("hier_multiperf_vel_1bar_med_chords").data)


@pytest.fixture(scope="module")
def golden():
  with np.load(GOLDEN) as data:
    return {k: data[k] for k in data.files}


def golden_sequences(golden, key):
  return [music_pb2.NoteSequence.FromString(b) for b in multiperf_golden.unpack(golden, key)]


@pytest.mark.parametrize("name,converter", [("med", MED), ("med_chords", MED_CHORDS)])
def test_to_tensors_matches_magenta(golden, name, converter):
  """Chorales (4 parts) and one with a real Groove drum part: tokens, chords, lengths.
  (Chords: the first chorale and the drum one; note_seq's chord inference is slow.)"""
  assert (converter.input_depth, converter.control_depth) == (
      490, 49 if name == "med_chords" else 0)
  sequences = golden_sequences(golden, "sequences")
  which = [0, len(sequences) - 1] if converter.control_depth else range(len(sequences))
  counts = golden[f"{name}/counts"]
  rows = np.concatenate([np.arange(counts[:i].sum(), counts[:i + 1].sum()) for i in which])
  tensors = [converter.to_tensors(sequences[i], Mode.EVAL) for i in which]
  np.testing.assert_array_equal([len(t) for t in tensors], counts[list(which)])
  outputs = [x for t in tensors for x in t.outputs]
  np.testing.assert_array_equal([multiperf_golden.token_ids(x) for x in outputs],
                                golden[f"{name}/ids"][rows])
  np.testing.assert_array_equal([x for t in tensors for x in t.inputs], outputs)
  np.testing.assert_array_equal([x for t in tensors for x in t.lengths],
                                golden[f"{name}/lengths"][rows])
  chords = [multiperf_golden.token_ids(c) if c.size else np.full(len(c), -1)
            for t in tensors for c in t.controls]
  np.testing.assert_array_equal(chords, golden[f"{name}/chord_ids"][rows])


@pytest.mark.parametrize("name,converter", [("med", MED), ("med_chords", MED_CHORDS)])
def test_from_tensors_matches_magenta(golden, name, converter):
  """Decodes of the golden tensors and of random one-hot outputs: identical protos."""
  ids, chord_ids = golden[f"{name}/ids"], golden[f"{name}/chord_ids"]
  controls = ([multiperf_golden.one_hots(c, 49) for c in chord_ids]
              if converter.control_depth else None)
  decoded = converter.from_tensors([multiperf_golden.one_hots(i, 490) for i in ids], controls)
  assert decoded == golden_sequences(golden, f"{name}/decoded")
  random_controls = ([multiperf_golden.one_hots(c, 49) for c in golden["random_chords"]]
                     if converter.control_depth else None)
  decoded = converter.from_tensors(
      [multiperf_golden.one_hots(i, 490) for i in golden["random_ids"]], random_controls)
  assert decoded == golden_sequences(golden, f"{name}/random_decoded")


def test_real_chorale_round_trip(golden):
  """Every bar of a chorale decodes to its notes (pitch, timing on the 24-step grid,
  velocity bin), one instrument per part with its program."""
  chorale = golden_sequences(golden, "sequences")[0]
  tensors = MED.to_tensors(chorale, Mode.EVAL)
  assert len(tensors) == 4 and all(len(x) == 512 for x in tensors.outputs)
  bars = MED.from_tensors(tensors.outputs)
  assert [len(b.notes) for b in bars] == [
      len([n for n in chorale.notes if 2.0 * k <= n.start_time < 2.0 * (k + 1)])
      for k in range(4)]
  for k, bar in enumerate(bars):
    got = sorted((n.instrument, n.program, n.pitch, round(n.start_time + 2.0 * k, 4))
                 for n in bar.notes)
    programs = sorted({n.program for n in chorale.notes})
    want = sorted((programs.index(n.program), n.program, n.pitch, round(n.start_time, 4))
                  for n in chorale.notes if 2.0 * k <= n.start_time < 2.0 * (k + 1))
    assert got == want
  assert MED.from_tensors(MED.to_tensors(bars[1], Mode.EVAL).outputs)[0] == bars[1]


def two_parts(pitch_a=60, pitch_b=48, notes_per_bar=4, velocity=80):
  ns = music_pb2.NoteSequence(ticks_per_quarter=220)
  ns.tempos.add(qpm=120.0)
  ns.time_signatures.add(numerator=4, denominator=4)
  for instrument, (pitch, program) in enumerate(((pitch_a, 0), (pitch_b, 33))):
    for k in range(notes_per_bar):
      start = 2.0 * k / notes_per_bar
      ns.notes.add(pitch=pitch, velocity=velocity, start_time=start,
                   end_time=start + 1.0 / notes_per_bar, instrument=instrument,
                   program=program)
  ns.total_time = 2.0
  return ns


def test_rejections():
  assert len(MED.to_tensors(two_parts(), Mode.EVAL)) == 1
  one_part = two_parts()
  del one_part.notes[4:]
  assert len(MED.to_tensors(one_part, Mode.EVAL)) == 0           # < 2 instruments
  assert len(MED.to_tensors(two_parts(notes_per_bar=32), Mode.EVAL)) == 0  # > 62 events
  waltz = two_parts()
  waltz.time_signatures[0].numerator = 3
  assert len(MED.to_tensors(waltz, Mode.EVAL)) == 0              # not 4/4
  with pytest.raises(ValueError, match="chord_encoding"):
    MultiInstrumentPerformanceConverter(chord_encoding="pitches")


def test_transposition_moves_note_tokens_only():
  x = MED.to_tensors(two_parts(), Mode.EVAL).outputs[0]
  batch = {"inputs": x[None], "outputs": x[None], "controls": np.zeros((1, 512, 0), np.float32),
           "lengths": np.full((1, 8), 64, np.int32)}
  moved = augment.make_transposer(MED, 3).apply(batch, np.array([2]))
  ns = MED.from_tensors(moved["outputs"])[0]
  want = MED.from_tensors([x])[0]
  for note in want.notes:
    note.pitch += 2
  assert ns == want


def test_a_few_training_steps_on_real_chorales(golden):
  """hier_multiperf_vel_1bar_med at toy widths through the training loop's own train step
  (per-segment lengths through the hierarchical encoder / decoder): the loss falls."""
  from flax_musicvae import train  # pylint: disable=import-outside-toplevel
  tensors = MED.to_tensors(golden_sequences(golden, "sequences")[0], Mode.EVAL)
  batch = {"inputs": np.stack(tensors.inputs), "outputs": np.stack(tensors.outputs),
           "controls": np.zeros((len(tensors), 512, 0), np.float32),
           "lengths": np.stack(tensors.lengths)}
  assert batch["lengths"].shape == (4, 8)
  c = config_lib.tiny(config_lib.load("hier_multiperf_vel_1bar_med"), rnn=8, z=4)
  c.model.dec_rnn_size = (8,)
  c.train.update(batch_size=4, learning_rate=3e-3)
  setup = train._setup(c, batch)
  step = steps.make_train_step(c, setup.model, setup.tx, setup.mesh)
  state, losses = setup.state, []
  for _ in range(3):
    state, metrics = step(state, batch)
    losses.append(float(metrics["loss"]))
  assert np.all(np.isfinite(losses)) and losses[-1] < losses[0], losses
