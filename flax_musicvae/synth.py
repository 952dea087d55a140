"""A small built-in synthesizer: NoteSequence -> mono WAV with numpy only.

For listening where FluidSynth and a General MIDI soundfont are not installed. Drums
(``is_drum`` notes) get synthesized kit voices chosen by General MIDI pitch (kick, snare,
hi-hats, toms, crash, ride: sine sweeps and filtered noise with exponential decays);
other notes a bright additive tone (6 harmonics) with an attack / decay / release
envelope. Loudness follows velocity. Deterministic: the noise is seeded.
"""

from __future__ import annotations

import functools
import os
import pathlib
import wave

import numpy as np

SAMPLE_RATE = 22050
TAIL_SECONDS = 1.0
#: General MIDI drum pitch -> voice (pitches not listed play a short tom-like click).
DRUM_VOICES = {
    **dict.fromkeys((35, 36), "kick"), **dict.fromkeys((37, 38, 39, 40), "snare"),
    **dict.fromkeys((22, 42, 44), "closed_hh"), **dict.fromkeys((26, 46), "open_hh"),
    **dict.fromkeys((41, 43, 58), "low_tom"), **dict.fromkeys((45, 47), "mid_tom"),
    **dict.fromkeys((48, 50), "high_tom"), **dict.fromkeys((49, 52, 55, 57), "crash"),
    **dict.fromkeys((51, 53, 59), "ride")}


def _decay(n: int, seconds: float, sample_rate: int) -> np.ndarray:
  return np.exp(-np.arange(n) / (seconds * sample_rate))


def _noise(n: int, seed: int, highpass: bool) -> np.ndarray:
  x = np.random.default_rng(seed).standard_normal(n + 1)
  return np.diff(x) / 2 if highpass else x[:n]


def _sweep(n: int, f0: float, f1: float, seconds: float, sample_rate: int) -> np.ndarray:
  """A sine gliding exponentially from ``f0`` to ``f1`` Hz over ``seconds``."""
  t = np.arange(n) / sample_rate
  freq = f1 + (f0 - f1) * np.exp(-t / seconds)
  return np.sin(2 * np.pi * np.cumsum(freq) / sample_rate)


@functools.lru_cache(maxsize=None)
def drum_voice(name: str, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
  """Unit-velocity waveform of kit voice ``name`` (peak about 1)."""
  length = {"crash": 1.6, "ride": 1.0, "open_hh": 0.45}.get(name, 0.5)
  n = int(length * sample_rate)
  d = functools.partial(_decay, n, sample_rate=sample_rate)
  if name == "kick":
    return _sweep(n, 160, 48, 0.04, sample_rate) * d(0.22)
  if name == "snare":
    return 0.5 * _sweep(n, 230, 180, 0.02, sample_rate) * d(0.08) + \
        0.6 * _noise(n, 1, False) * d(0.12)
  if name in ("closed_hh", "open_hh"):
    return _noise(n, 2, True) * d(0.035 if name == "closed_hh" else 0.25)
  if name in ("crash", "ride"):
    t = np.arange(n) / sample_rate
    metal = sum(np.sin(2 * np.pi * f * t) for f in (3150, 4280, 5470)) / 3
    return (0.7 * _noise(n, 3, True) + (0.25 if name == "crash" else 0.5) * metal) * \
        d(0.7 if name == "crash" else 0.45)
  f0 = {"low_tom": 95, "mid_tom": 135, "high_tom": 185}.get(name, 300)
  return _sweep(n, 1.4 * f0, f0, 0.05, sample_rate) * d(0.25)


def tone(pitch: int, seconds: float, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
  """A pitched note of ``seconds`` plus a 60 ms release (peak about 1)."""
  n = int((seconds + 0.06) * sample_rate)
  t = np.arange(n) / sample_rate
  f = 440.0 * 2 ** ((pitch - 69) / 12)
  wave_ = sum(np.sin(2 * np.pi * k * f * t) / k for k in range(1, 7) if k * f < sample_rate / 2)
  env = np.minimum(t / 0.005, 1.0) * (0.6 + 0.4 * np.exp(-t / 0.15))
  env *= np.clip((seconds + 0.06 - t) / 0.06, 0.0, 1.0)
  return wave_ * env / 1.5


def render(ns, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
  """Float32 mono samples of NoteSequence ``ns`` (peak at most 0.9)."""
  end = max((n.end_time for n in ns.notes), default=0.0)
  out = np.zeros(int((end + TAIL_SECONDS) * sample_rate) + 1, np.float64)
  for note in ns.notes:
    if note.is_drum:
      voice = drum_voice(DRUM_VOICES.get(note.pitch, "other"), sample_rate)
    else:
      voice = tone(note.pitch, max(note.end_time - note.start_time, 0.01), sample_rate)
    start = int(round(note.start_time * sample_rate))
    piece = voice[:len(out) - start] * (note.velocity / 127.0) ** 1.5
    out[start:start + len(piece)] += piece
  peak = np.abs(out).max(initial=0.0)
  if peak > 0.9:
    out *= 0.9 / peak
  return out.astype(np.float32)


def write_wav(ns, path: str | os.PathLike, sample_rate: int = SAMPLE_RATE) -> pathlib.Path:
  """Writes ``ns`` as a 16-bit mono WAV file."""
  samples = np.round(render(ns, sample_rate) * 32767).astype("<i2")
  with wave.open(str(path), "wb") as f:
    f.setnchannels(1)
    f.setsampwidth(2)
    f.setframerate(sample_rate)
    f.writeframes(samples.tobytes())
  return pathlib.Path(path)
