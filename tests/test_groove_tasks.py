"""GrooVAE tasks on inputs longer than the model window; WAV taps -> onsets -> drumify."""

import dataclasses

import numpy as np
import pytest
from note_seq.protobuf import music_pb2
from scipy.io import wavfile

from conftest import FIXTURES
from flax_musicvae import audio_taps
from flax_musicvae import config_lib
from flax_musicvae import inference

BEAT = sorted((FIXTURES / "groove").rglob("*_beat_*.mid"))[0]
ROCK = next((FIXTURES / "groove").rglob("2_rock_100_beat_4-4.mid"))
CLOSED_HH = {42, 44, 54, 68, 69, 70, 71, 73, 78, 80, 22}


@pytest.fixture(scope="module")
def models():
  def make(name):
    cfg = config_lib.tiny(config_lib.load(f"{name}"))
    return inference.MusicVAEModel.init_random(cfg, seed=1)
  return {task: make(name) for task, name in [
      ("humanize", "groove_2bar_humanize"), ("drumify", "groove_2bar_tap_fixed_velocity"),
      ("infill", "groove_2bar_add_closed_hh"), ("transfer", "groove_2bar_hits_control_tfds")]}


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch):
  monkeypatch.setattr(inference.loading, "CACHE_DIR", tmp_path / "cache")


def clip(bars: int, start_bar: int = 0, quantize: bool = False, path=BEAT):
  """Bars of a Groove beat whose notes quantize into exactly those bars."""
  ns = inference.read_midi(path)
  step = 15.0 / ns.tempos[0].qpm
  out = music_pb2.NoteSequence()
  out.CopyFrom(ns)
  del out.notes[:]
  for note in ns.notes:
    t = note.start_time - start_bar * 16 * step
    t = round(t / step) * step if quantize else t
    if t >= 0 and round(t / step) < 16 * bars:
      out.notes.add().CopyFrom(note)
      out.notes[-1].start_time, out.notes[-1].end_time = t, t + step
  out.total_time = 16 * bars * step
  return out


def bar_seconds(ns) -> float:
  return 240.0 / ns.tempos[0].qpm


def test_humanize_long_input_keeps_bars_and_tempo(models):
  ns = clip(5, quantize=True)  # 2.5 model windows
  out = inference.humanize(models["humanize"], ns, seed=0)
  assert out.tempos[0].qpm == pytest.approx(ns.tempos[0].qpm)
  starts = np.array([n.start_time for n in out.notes])
  assert len(starts) and starts.max() < 5 * bar_seconds(ns)
  assert starts.max() > 4 * bar_seconds(ns)  # the padded last window is decoded too
  assert all(n.is_drum for n in out.notes)


def test_chunking_equals_separate_windows(models):
  """Greedy decoding of a 4-bar input = its two 2-bar halves decoded on their own."""
  model = models["humanize"]
  ns = clip(4, quantize=True)
  whole = inference.humanize(model, ns, temperature=None)
  first = inference.humanize(model, clip(2, quantize=True), temperature=None)
  second = inference.humanize(model, clip(2, 2, quantize=True), temperature=None)
  shift = 2 * bar_seconds(ns)
  key = lambda note: (round(note[0], 4), note[1])  # noqa: E731
  expected = sorted([(n.start_time, n.pitch, n.velocity) for n in first.notes] +
                    [(n.start_time + shift, n.pitch, n.velocity) for n in second.notes],
                    key=key)
  got = sorted([(n.start_time, n.pitch, n.velocity) for n in whole.notes], key=key)
  assert [g[1:] for g in got] == [e[1:] for e in expected]
  np.testing.assert_allclose([g[0] for g in got], [e[0] for e in expected], atol=1e-5)


def test_tasks_need_the_right_model(models):
  with pytest.raises(inference.InputError, match="groove_2bar_humanize"):
    inference.humanize(models["drumify"], clip(2))
  with pytest.raises(inference.InputError, match="tap"):
    inference.drumify(models["humanize"], clip(2))
  with pytest.raises(inference.InputError, match="add_closed_hh"):
    inference.infill(models["humanize"], clip(2))
  with pytest.raises(inference.InputError, match="hits_control"):
    inference.transfer(models["humanize"], clip(2), clip(2))


def test_drumify_from_a_bassline(models):
  bass = clip(3)
  for note in bass.notes:
    note.is_drum, note.pitch, note.program = False, 40, 33
  out = inference.drumify(models["drumify"], bass, seed=0)
  assert out.notes and all(n.is_drum for n in out.notes)
  assert max(n.start_time for n in out.notes) < 3 * bar_seconds(bass)


def test_infill_replace_and_merge(models):
  ns = clip(3)
  half = 7.5 / ns.tempos[0].qpm  # half a 16th
  others = sorted((n.pitch, n.start_time) for n in ns.notes if n.pitch not in CLOSED_HH)
  # Temperature 1: the untrained model's hi-hats fall both on and off the played ones.
  replaced = inference.infill(models["infill"], ns, keep_original=False, temperature=1.0)
  added = inference.infill(models["infill"], ns, keep_original=True, temperature=1.0)
  generated = sorted((n.pitch, n.start_time) for n in replaced.notes if n.pitch in CLOSED_HH)
  assert sorted((n.pitch, n.start_time) for n in replaced.notes
                if n.pitch not in CLOSED_HH) == others
  # Adding keeps every played note and the generated hi-hats away from played ones.
  played_hh = np.array([n.start_time for n in ns.notes if n.pitch in CLOSED_HH])
  doubles = [g for g in generated if np.abs(played_hh - g[1]).min() < half]
  assert doubles and len(doubles) < len(generated)  # the clip tests both cases
  original = sorted((n.pitch, n.start_time) for n in ns.notes)
  assert sorted((n.pitch, n.start_time) for n in added.notes) == sorted(
      original + [g for g in generated if g not in doubles])
  # No hit is doubled: same-pitch notes closer than half a 16th were both played so.
  played = {(n.pitch, n.start_time) for n in ns.notes}
  notes = sorted((n.pitch, n.start_time) for n in added.notes)
  for a, b in zip(notes, notes[1:]):
    if a[0] == b[0] and b[1] - a[1] < half:
      assert a in played and b in played


def hit_cells(model, ns) -> set:
  """(16th step, drum class) of every hit, as the model's converter reads ``ns``."""
  conv = dataclasses.replace(model.converter, split_bars=None, hop_size=None)
  hits = conv.to_tensors(ns, "infer").controls[0]
  return set(zip(*np.nonzero(hits)))


def test_transfer_keeps_the_hits_of_input_1(models):
  """Groove transfer on two real beats: exactly input 1's hits, the decoder's groove."""
  model = models["transfer"]
  hits, groove = clip(5), clip(2, path=ROCK)
  out = inference.transfer(model, hits, groove, seed=0)
  assert out.tempos[0].qpm == pytest.approx(hits.tempos[0].qpm)
  assert max(n.start_time for n in out.notes) < 5 * bar_seconds(hits)
  cells = hit_cells(model, hits)
  assert len(cells) > 50 and hit_cells(model, out) == cells
  assert len(out.notes) == len(cells)
  velocities = {n.velocity for n in out.notes}
  assert min(velocities) >= 1 and len(velocities) > 5  # velocities come from the decoder
  step = 15.0 / out.tempos[0].qpm
  offsets = [n.start_time / step - round(n.start_time / step) for n in out.notes]
  assert max(np.abs(offsets)) < 0.5 and np.std(offsets) > 0.01  # so does the timing


def test_onsets_of_a_synthetic_click_track(tmp_path):
  """Taps at known times, the first at t=0, over noise: every one found, none added."""
  times = np.array([0.0, 0.35, 0.6, 0.72, 1.1, 1.5, 1.62, 2.0, 2.25, 2.5])
  loud = np.array([1.0, 0.5, 1.0, 0.3, 1.0, 0.6, 0.4, 1.0, 0.3, 1.0])
  audio = audio_taps.click_track(times, 22050, amplitudes=loud, noise=0.01)
  path = tmp_path / "taps.wav"
  wavfile.write(path, 22050, (audio * 32767).astype(np.int16))
  ns = audio_taps.wav_to_taps(path, qpm=100)
  detected = np.array([n.start_time for n in ns.notes])
  assert len(detected) == len(times)
  np.testing.assert_allclose(detected, times, atol=0.01)
  velocities = np.array([n.velocity for n in ns.notes])
  assert velocities[loud == 1.0].min() > velocities[loud <= 0.4].max()
  assert ns.tempos[0].qpm == 100 and ns.time_signatures[0].numerator == 4
  # The offset moves every tap earlier; those within half a 16th before it land on 0.
  shifted = audio_taps.wav_to_taps(path, qpm=100, offset=0.36)
  np.testing.assert_allclose([n.start_time for n in shifted.notes],
                             np.r_[0.0, times[2:] - 0.36], atol=0.01)
  # A high threshold keeps the loud taps only.
  loud_only = audio_taps.wav_to_taps(path, qpm=100, threshold=0.6)
  np.testing.assert_allclose([n.start_time for n in loud_only.notes], times[loud == 1.0],
                             atol=0.01)
  with pytest.raises(audio_taps.AudioError, match="threshold"):
    audio_taps.wav_to_taps(path, threshold=1.5)
  with pytest.raises(audio_taps.AudioError, match="before the 3 s offset"):
    audio_taps.wav_to_taps(path, offset=3.0)


def test_drumify_from_wav(models, tmp_path):
  beat = 60.0 / 120 / 4 * np.array([0, 4, 6, 8, 12, 16, 20, 22, 24, 28, 40])
  path = tmp_path / "taps.wav"
  wavfile.write(path, 16000, audio_taps.click_track(beat, 16000, noise=0.01)
                .astype(np.float32))
  taps = audio_taps.wav_to_taps(path, qpm=120)
  np.testing.assert_allclose([n.start_time for n in taps.notes], beat, atol=0.01)
  out = inference.drumify(models["drumify"], taps, seed=0)
  assert out.notes and max(n.start_time for n in out.notes) < 3 * 2.0


def test_bad_audio(tmp_path):
  silence = tmp_path / "silence.wav"
  wavfile.write(silence, 16000, np.zeros(16000, np.int16))
  with pytest.raises(audio_taps.AudioError, match="no taps"):
    audio_taps.wav_to_taps(silence)
  junk = tmp_path / "junk.wav"
  junk.write_text("hello")
  with pytest.raises(audio_taps.AudioError, match="WAV"):
    audio_taps.wav_to_taps(junk)
  truncated = tmp_path / "truncated.wav"
  truncated.write_bytes(b"RIFF\x00\x00")
  with pytest.raises(audio_taps.AudioError, match="WAV"):
    audio_taps.wav_to_taps(truncated)
