"""Inference API: determinism, workdir round trip, encode errors, latent maths, attributes."""


import numpy as np
import pytest
from note_seq import sequences_lib
from note_seq.protobuf import music_pb2

from conftest import FIXTURES
from flax_musicvae import attributes
from flax_musicvae import config_lib
from flax_musicvae import inference

BEATS = sorted((FIXTURES / "groove").rglob("*_beat_*.mid"))


@pytest.fixture(scope="module")
def model():
  return inference.MusicVAEModel.init_random(config_lib.tiny("groove_2bar_humanize"), seed=0)


@pytest.fixture(autouse=True)
def params_cache(tmp_path, monkeypatch):
  monkeypatch.setattr(inference.loading, "CACHE_DIR", tmp_path / "cache")


def clip(path, bars: int, start_bar: int = 0):
  """The first ``bars`` bars (4/4) of a Groove file, as a NoteSequence."""
  ns = inference.read_midi(path)
  bar = 240.0 / ns.tempos[0].qpm
  return sequences_lib.extract_subsequence(ns, start_bar * bar, (start_bar + bars) * bar)


def test_sample_is_deterministic(model):
  a = model.decode_to_tensors(model.sample_z(3, seed=7), 0.5, seed=7)
  b = model.decode_to_tensors(model.sample_z(3, seed=7), 0.5, seed=7)
  c = model.decode_to_tensors(model.sample_z(3, seed=8), 0.5, seed=8)
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, c)
  assert a.shape == (3, 32, 27)
  assert model.sample(3, seed=7) == model.sample(3, seed=7)


def test_same_z(model):
  z = model.sample_z(4, same_z=True, seed=1)
  assert np.all(z == z[0])


def test_batch_padding_does_not_change_results(model):
  z = model.sample_z(3, seed=2)
  both = model.decode_to_tensors(z, None)
  alone = model.decode_to_tensors(z[1:2], None)
  np.testing.assert_array_equal(both[1], alone[0])


def test_workdir_round_trip(model, tmp_path):
  model.save(tmp_path / "run")
  loaded = inference.MusicVAEModel.from_workdir(tmp_path / "run")
  cached = inference.MusicVAEModel.from_workdir(tmp_path / "run")  # from the .npz cache
  assert list((tmp_path / "cache" / "params").glob("*.npz"))
  z = model.sample_z(2, seed=3)
  expected = model.decode_to_tensors(z, 0.5, seed=3)
  np.testing.assert_array_equal(loaded.decode_to_tensors(z, 0.5, seed=3), expected)
  np.testing.assert_array_equal(cached.decode_to_tensors(z, 0.5, seed=3), expected)
  assert loaded.config.name == "groovae_2bar_humanize"


def test_from_workdir_errors(tmp_path):
  with pytest.raises(FileNotFoundError, match="config.json"):
    inference.MusicVAEModel.from_workdir(tmp_path)
  (tmp_path / "config.json").write_text(config_lib.tiny("groove_4bar").to_json())
  with pytest.raises(FileNotFoundError, match="no checkpoint"):
    inference.MusicVAEModel.from_workdir(tmp_path)


def test_encode_one_window(model):
  ns = clip(BEATS[0], 2)
  z, mu, sigma = model.encode([ns], seed=0)
  z2, mu2, _ = model.encode([ns], seed=1)
  assert z.shape == mu.shape == sigma.shape == (1, 4)
  np.testing.assert_array_equal(mu, mu2)
  assert not np.array_equal(z, z2)
  assert np.all(sigma > 0)
  np.testing.assert_allclose(z, mu + sigma * (z - mu) / sigma, rtol=1e-6)


def test_encode_lists_candidate_windows(model):
  ns = clip(BEATS[0], 6)
  with pytest.raises(inference.MultipleExtractedExamplesError,
                     match="3 candidate 2-bar windows") as e:
    model.encode([ns])
  assert len(e.value.candidates) == 3
  assert "(bars 1-2, 3-4, 5-6); pass --start_bar=N" in str(e.value)


def test_start_bar_encodes_that_window_of_a_long_file(model):
  """A whole Groove file (54 bars): the error lists its windows on one line, and
  start_bars=3 encodes exactly the converter's window of bars 3-4."""
  ns = inference.read_midi(BEATS[0])
  with pytest.raises(inference.MultipleExtractedExamplesError) as e:
    model.encode([ns])
  message = str(e.value)
  assert "\n" not in message and "27 candidate 2-bar windows" in message
  assert "bars 1-2, 3-4, 5-6, 7-8, 9-10, 11-12, ..., 53-54" in message
  windows = model.converter.to_tensors(ns, "infer")
  _, want, _ = model.encode_tensors(windows.inputs[1][None], [32])
  _, mu, _ = model.encode([ns], start_bars=3)
  np.testing.assert_allclose(mu, want, atol=1e-6)
  _, both, _ = model.encode([ns, ns], start_bars=[3, 5])
  np.testing.assert_allclose(both[0], want[0], atol=1e-6)
  assert not np.allclose(both[1], want[0])
  with pytest.raises(inference.NoExtractedExamplesError, match="has 54 bars.*not 54"):
    model.encode([ns], start_bars=54)
  with pytest.raises(inference.InputError, match="one for all or one per input"):
    model.encode([ns, ns], start_bars=[1, 2, 3])


def test_meters_of_16_steps_a_bar_are_accepted():
  """A real 2/2 reel (music21's corpus) encodes like the same notes in 4/4; 3/4 and 6/8
  are refused in one line."""
  mel = inference.MusicVAEModel.init_random(config_lib.tiny("cat_mel_2bar_small"))
  reel = inference.read_midi(FIXTURES / "melodies" / "CupOfTeaReel.mid")
  assert [(t.numerator, t.denominator) for t in reel.time_signatures] == [(2, 2)]
  windows = inference.candidate_windows(reel, mel.converter)
  assert [w.start_bar for w in windows] == list(range(1, 16))  # one-bar hop, 16 bars
  _, mu, _ = mel.encode([reel], start_bars=5)
  common = music_pb2.NoteSequence()
  common.CopyFrom(reel)
  common.time_signatures[0].numerator = common.time_signatures[0].denominator = 4
  np.testing.assert_array_equal(mu, mel.encode([common], start_bars=5)[1])
  for meter in ((3, 4), (6, 8)):
    odd = music_pb2.NoteSequence()
    odd.CopyFrom(reel)
    odd.time_signatures[0].numerator, odd.time_signatures[0].denominator = meter
    with pytest.raises(inference.NoExtractedExamplesError) as e:
      mel.encode([odd], start_bars=1)
    assert "\n" not in str(e.value)
    assert f"{meter[0]}/{meter[1]} time" in str(e.value) and "12 steps per bar" in str(e.value)


def test_reconstruct_stitches_every_window(model):
  """Six real bars: 2-bar windows reconstructed one after the other, at the input's
  tempo; the second one is the reconstruction of bars 3-4 alone."""
  ns = clip(BEATS[0], 6)
  whole = inference.reconstruct(model, ns, temperature=None)
  assert whole.tempos[0].qpm == pytest.approx(ns.tempos[0].qpm)
  middle = inference.reconstruct(model, ns, temperature=None, start_bar=3)
  bar = inference.bar_seconds(ns, model.converter)
  in_middle = [(n.pitch, round((n.start_time - 2 * bar) / bar * 16, 3))
               for n in whole.notes if 2 * bar - bar / 32 <= n.start_time < 4 * bar - bar / 32]
  assert sorted(in_middle) == sorted((n.pitch, round(n.start_time / bar * 16, 3))
                                     for n in middle.notes)
  # An onset just before bar 7 quantizes into it: the input has 7 bars, and so has its
  # reconstruction.
  assert inference.num_bars(ns, model.converter) == 7
  assert max(n.start_time for n in whole.notes) < 7 * bar


def test_encode_bad_inputs(model, tmp_path):
  text = tmp_path / "notes.mid"
  text.write_text("not a midi file")
  empty = tmp_path / "empty.mid"
  empty.write_bytes(b"")
  with pytest.raises(inference.InputError, match="not a MIDI file"):
    model.encode([text])
  with pytest.raises(inference.InputError, match="empty"):
    model.encode([empty])
  with pytest.raises(inference.InputError, match="no such file"):
    model.encode([tmp_path / "missing.mid"])
  waltz = clip(BEATS[0], 2)
  waltz.time_signatures[0].numerator = 3
  with pytest.raises(inference.NoExtractedExamplesError, match="3/4"):
    model.encode([waltz])
  piano = clip(BEATS[0], 2)
  for note in piano.notes:
    note.is_drum = False
  with pytest.raises(inference.NoExtractedExamplesError, match="no drum notes"):
    model.encode([piano])
  short = clip(BEATS[0], 0.5)
  with pytest.raises(inference.NoExtractedExamplesError, match="2-bar"):
    model.encode([short])


def test_slerp_lerp_hand_computed():
  p0, p1 = np.array([1.0, 0.0]), np.array([0.0, 2.0])
  path = inference.slerp(p0, p1, np.array([0.0, 0.5, 1.0]))
  # Omega = 90 degrees: weights sin(45)/sin(90) on both ends.
  np.testing.assert_allclose(path, [[1, 0], [np.sqrt(0.5), 2 * np.sqrt(0.5)], [0, 2]],
                             atol=1e-6)
  np.testing.assert_allclose(inference.lerp(p0, p1, np.array([0.25])), [[0.75, 0.5]])
  np.testing.assert_allclose(inference.slerp(p0, 3 * p0, np.array([0.5])), [[2.0, 0.0]])


def test_bilinear_grid():
  corners = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
  grid = inference.bilinear_grid(corners, rows=3, cols=5)
  assert grid.shape == (3, 5, 2)
  np.testing.assert_allclose(grid[[0, 0, -1, -1], [0, -1, 0, -1]], corners)
  np.testing.assert_allclose(grid[1, 2], [0.5, 0.5])
  np.testing.assert_allclose(grid[2, 1], [0.25, 1.0])


def test_interpolate_endpoints_decode_the_means(model):
  a, b = clip(BEATS[0], 2), clip(BEATS[1], 2)
  _, mu, _ = model.encode([a, b])
  path = model.interpolate(a, b, num_steps=4, temperature=None)
  assert len(path) == 4
  ends = model.decode(mu, temperature=None)
  assert path[0] == ends[0] and path[-1] == ends[1]
  with pytest.raises(inference.InputError, match="method"):
    model.interpolate(a, b, 3, method="cubic")


def test_grid_corners_decode_the_means(model):
  seqs = [clip(BEATS[i], 2) for i in range(4)]
  _, mu, _ = model.encode(seqs)
  grid = model.interpolate_grid(seqs, rows=2, cols=3, temperature=None)
  corners = model.decode(mu, temperature=None)
  assert [grid[0][0], grid[0][-1], grid[-1][0], grid[-1][-1]] == corners


def test_similar_extremes(model):
  ns = clip(BEATS[2], 2)
  _, mu, _ = model.encode([ns])
  same = model.similar(ns, 2, 1.0, temperature=None)
  assert same == model.decode(np.repeat(mu, 2, 0), temperature=None)
  fresh = model.similar(ns, 2, 0.0, temperature=None, seed=5)
  assert fresh == model.decode(model.sample_each(2, seed=5), temperature=None)
  np.testing.assert_array_equal(model.sample_each(2, seed=5)[1], model.sample_z(1, seed=6)[0])
  with pytest.raises(inference.InputError):
    model.similar(ns, 2, 1.5)


def test_chord_conditioned_sampling():
  chords_model = inference.MusicVAEModel.init_random(config_lib.tiny("cat_mel_2bar_med_chords"))
  controls = chords_model.chord_controls(["C", "G", "Am", "F"])
  assert controls.shape == (32, 49)
  np.testing.assert_array_equal(np.argmax(controls, 1), np.repeat([1, 8, 22, 6], 8))
  seqs = chords_model.sample(2, controls=controls, seed=0)
  assert len(seqs) == 2 and all(not n.is_drum for s in seqs for n in s.notes)
  with pytest.raises(inference.InputError, match="controls"):
    chords_model.sample(1)
  with pytest.raises(inference.InputError, match="evenly"):
    chords_model.chord_controls(["C", "G", "Am"])
  with pytest.raises(inference.InputError, match="triad"):
    chords_model.chord_controls(["Csus4", "G", "Am", "F"])


def test_multi_instrument_chord_model_takes_one_chord():
  """A 1-bar multiperf model's steps are instruments' events: chords cannot split them."""
  multi = inference.MusicVAEModel.init_random(
      config_lib.tiny("hier_multiperf_vel_1bar_med_chords"))
  controls = multi.chord_controls(["G"])
  assert controls.shape == (multi.length, 49) and set(np.argmax(controls, 1)) == {8}
  with pytest.raises(inference.InputError, match="one chord per sample, not 2"):
    multi.chord_controls(["C", "G"])


def test_not_chord_model(model):
  with pytest.raises(inference.InputError, match="not chord-conditioned"):
    model.chord_controls(["C"])


def _drum_seq(steps, qpm=120.0, bars=1):
  ns = music_pb2.NoteSequence()
  ns.tempos.add(qpm=qpm)
  step = 15.0 / qpm
  for s in steps:
    ns.notes.add(pitch=36, velocity=100, start_time=s * step, end_time=(s + 1) * step,
                 is_drum=True)
  ns.total_time = bars * 16 * step
  return ns


def test_attribute_functions_hand_computed():
  ns = _drum_seq([0, 1, 4, 7], bars=2)
  assert attributes.note_density(ns) == 2.0
  assert attributes.syncopation(ns) == 0.5
  assert attributes.mean_velocity(ns) == 100.0
  ns.notes[0].start_time += 0.25 * 0.125  # a quarter step late
  assert attributes.timing_offset(ns) == pytest.approx(0.25 / 4)
  ns.total_time = 0.0  # unset: bars from the onsets (last one in bar 1)
  assert attributes.note_density(ns) == 4.0


def test_attribute_vector(model, tmp_path):
  examples = [t for p in BEATS[:3] for t in [
      model.converter.to_tensors(clip(p, 8), "infer")]]
  data = {k: np.concatenate([np.stack(getattr(t, k)) for t in examples])
          for k in ("inputs", "outputs", "controls", "lengths")}
  vec = attributes.compute_attribute_vector(model, data, "note_density")
  values = attributes.attribute_values(model, data["outputs"], None, "note_density")
  low, high = np.quantile(values, [0.25, 0.75])
  _, mu, _ = model.encode_tensors(data["inputs"], data["lengths"])
  np.testing.assert_allclose(vec.vector, mu[values >= high].mean(0) - mu[values <= low].mean(0),
                             rtol=1e-6)
  assert vec.metadata["mean_top"] > vec.metadata["mean_bottom"]
  loaded = attributes.AttributeVector.load(vec.save(tmp_path / "density.npz"))
  np.testing.assert_array_equal(loaded.vector, vec.vector)
  assert loaded.metadata == vec.metadata
  z = np.zeros((2, 4), np.float32)
  np.testing.assert_allclose(loaded.apply(z, [1.0, -2.0]), [vec.vector, -2 * vec.vector])
  with pytest.raises(ValueError, match="another model"):
    loaded.apply(np.zeros((1, 5)))
  with pytest.raises(ValueError, match="unknown attribute"):
    attributes.compute_attribute_vector(model, data, "loudness")


def test_drum_grid_and_piano_roll_hand_computed(tmp_path):
  from flax_musicvae import render  # pylint: disable=import-outside-toplevel
  ns = _drum_seq([0, 17])
  ns.notes[1].pitch, ns.notes[1].velocity = 38, 64
  grid = render.drum_grid(ns)
  assert grid.shape == (9, 32) and np.count_nonzero(grid) == 2
  assert grid[0, 0] == pytest.approx(100 / 127) and grid[1, 17] == pytest.approx(64 / 127)
  melody = music_pb2.NoteSequence()
  melody.tempos.add(qpm=120)
  melody.notes.add(pitch=60, velocity=127, start_time=0.0, end_time=0.5)  # 4 steps
  melody.notes.add(pitch=64, velocity=127, start_time=0.5, end_time=0.625)
  roll, low = render.piano_roll(melody)
  assert low == 60 and roll.shape == (5, 5)
  np.testing.assert_array_equal(roll[0], [1, 1, 1, 1, 0])
  np.testing.assert_array_equal(roll[4], [0, 0, 0, 0, 1])
  png = render.save_png([ns, melody], tmp_path / "x.png", ["drums", "melody"])
  assert png.read_bytes()[:4] == b"\x89PNG"
