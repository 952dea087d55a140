"""The built-in synthesizer: onsets where the notes are, pitch, loudness, the WAV file."""

import wave

import note_seq
import numpy as np

from flax_musicvae import render
from flax_musicvae import synth

SR = synth.SAMPLE_RATE


def _rms(x: np.ndarray, t0: float, t1: float) -> float:
  return float(np.sqrt(np.mean(x[int(t0 * SR):int(t1 * SR)] ** 2)))


def test_drum_hits_sound_at_their_onsets_and_follow_velocity():
  ns = note_seq.NoteSequence()
  for t, pitch, vel in ((0.0, 36, 100), (1.0, 38, 100), (2.0, 42, 100), (3.0, 42, 50)):
    ns.notes.add(pitch=pitch, velocity=vel, start_time=t, end_time=t + 0.1, is_drum=True)
  x = synth.render(ns)
  assert len(x) == int((3.1 + synth.TAIL_SECONDS) * SR) + 1 and np.abs(x).max() <= 0.9
  assert _rms(x, 0.0, 0.03) > 0.01
  for t in (1.0, 2.0, 3.0):  # each hit stands out of the previous one's tail
    assert _rms(x, t, t + 0.03) > 10 * _rms(x, t - 0.1, t - 0.01)
  assert _rms(x, 3.0, 3.03) < 0.6 * _rms(x, 2.0, 2.03)  # velocity 50 is softer than 100
  # The kick is low, the hi-hat high: power spectrum centroids.
  def centroid(t):
    seg = x[int(t * SR):int((t + 0.05) * SR)]
    spec = np.abs(np.fft.rfft(seg * np.hanning(len(seg)))) ** 2
    return float((np.fft.rfftfreq(len(seg), 1 / SR) * spec).sum() / spec.sum())
  assert centroid(0.0) < 400 < 3000 < centroid(2.0)


def test_pitched_note_has_its_frequency_and_length():
  ns = note_seq.NoteSequence()
  ns.notes.add(pitch=69, velocity=100, start_time=0.5, end_time=1.5)
  x = synth.render(ns)
  seg = x[int(0.6 * SR):int(1.4 * SR)]
  freqs = np.fft.rfftfreq(len(seg), 1 / SR)
  assert abs(freqs[np.argmax(np.abs(np.fft.rfft(seg)))] - 440.0) < 2.0
  assert _rms(x, 0.0, 0.49) == 0.0 and _rms(x, 1.6, 2.0) == 0.0 and _rms(x, 1.0, 1.4) > 0.1


def test_render_wav_writes_a_playable_file(tmp_path, monkeypatch):
  monkeypatch.setattr(render, "fluidsynth_unavailable_reason", lambda: "test: no fluidsynth")
  ns = note_seq.NoteSequence()
  ns.tempos.add(qpm=120)
  ns.notes.add(pitch=36, velocity=90, start_time=0.0, end_time=0.25, is_drum=True,
               instrument=9)
  ns.notes.add(pitch=60, velocity=90, start_time=0.5, end_time=1.0)
  ns.total_time = 1.0
  midi = render.write_midi(ns, tmp_path / "a.mid")
  path, engine = render.render_wav(midi, tmp_path / "a.wav")
  assert engine == "built-in synth"
  with wave.open(str(path)) as f:
    assert (f.getnchannels(), f.getsampwidth(), f.getframerate()) == (1, 2, SR)
    frames = np.frombuffer(f.readframes(f.getnframes()), "<i2")
  assert len(frames) == int((1.0 + synth.TAIL_SECONDS) * SR) + 1
  assert np.abs(frames[:int(0.05 * SR)]).max() > 5000  # the kick at t=0
