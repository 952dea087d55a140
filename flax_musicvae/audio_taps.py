"""Tapping recordings (WAV) -> onset times -> a tap NoteSequence for Tap2Drum.

Onset detection in numpy/scipy: a novelty curve that sums the half-wave rectified
frame-to-frame increase of log spectral magnitude (spectral flux) and of log frame
energy, then peak picking (local maximum, above a moving average plus a threshold,
at least ``min_gap`` apart). Tap strength -> MIDI velocity. scipy is imported where used,
so importing this module (e.g. for ``AudioError``) stays cheap.
"""

from __future__ import annotations

import os
import struct

from note_seq.protobuf import music_pb2
import numpy as np
from scipy import signal
from scipy.io import wavfile

TAP_PITCH = 36


class AudioError(ValueError):
  """The file is not a usable WAV recording."""


def read_wav(path: str | os.PathLike) -> tuple[np.ndarray, int]:
  """Mono float samples in [-1, 1] and the sample rate."""
  try:
    rate, data = wavfile.read(path)
  except (ValueError, OSError, struct.error) as e:  # struct.error: a truncated header
    raise AudioError(f"{path}: cannot read as a WAV file ({e}); pass a PCM .wav "
                     "recording") from e
  data = np.asarray(data)
  if data.dtype.kind in "iu":
    info = np.iinfo(data.dtype)
    data = (data.astype(np.float64) - (info.min + info.max + 1) / 2) / (info.max + 1)
  data = data.astype(np.float64)
  if data.ndim == 2:
    data = data.mean(axis=1)
  if not data.size:
    raise AudioError(f"{path}: the recording is empty")
  return data, int(rate)


def novelty(audio: np.ndarray, rate: int, hop: float = 0.005, window: float = 0.023
            ) -> tuple[np.ndarray, float, int]:
  """Onset novelty per frame (normalised to max 1), the frame rate, and ``lead``: the
  number of frames before t=0.

  The recording is preceded by more than a window of its own noise floor (the 10th
  percentile of its 5 ms RMS levels, as white noise): a tap at t=0 then rises out of
  quiet like any other, while the start of a noisy recording is no onset.
  """
  hop_n = max(1, int(round(hop * rate)))
  win_n = max(hop_n * 2, int(round(window * rate)))
  lead = -(-win_n // hop_n)
  frames = max(1, len(audio) // hop_n)
  rms = np.sqrt(np.mean(np.resize(audio, frames * hop_n).reshape(frames, hop_n) ** 2, 1))
  floor = np.random.default_rng(0).standard_normal(lead * hop_n + win_n // 2)
  padded = np.concatenate([np.percentile(rms, 10) * floor, audio, np.zeros(win_n)])
  _, _, spec = signal.stft(padded, rate, window="hann", nperseg=win_n,
                           noverlap=win_n - hop_n, boundary=None, padded=False)
  mag = np.log1p(100.0 * np.abs(spec))
  flux = np.maximum(np.diff(mag, axis=1), 0.0).sum(axis=0)
  energy = np.log1p(100.0 * (np.abs(spec) ** 2).sum(axis=0))
  rise = np.maximum(np.diff(energy), 0.0)
  curve = flux / (flux.max() or 1.0) + rise / (rise.max() or 1.0)
  curve = np.concatenate([[0.0], curve])
  return curve / (curve.max() or 1.0), rate / hop_n, lead


def pick_peaks(curve: np.ndarray, frame_rate: float, threshold: float = 0.1,
               min_gap: float = 0.05, average: float = 0.1) -> np.ndarray:
  """Frame indices of onsets: local maxima above a moving average + ``threshold``."""
  gap = max(1, int(round(min_gap * frame_rate)))
  avg = np.convolve(curve, np.ones(2 * int(average * frame_rate) + 1), "same")
  avg /= 2 * int(average * frame_rate) + 1
  peaks, _ = signal.find_peaks(curve, height=avg + threshold, distance=gap)
  return peaks


def detect_onsets(audio: np.ndarray, rate: int, threshold: float = 0.1,
                  min_gap: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
  """Onset times in seconds and their strengths in (0, 1]."""
  curve, frame_rate, lead = novelty(audio, rate)
  peaks = pick_peaks(curve, frame_rate, threshold, min_gap)
  # A frame's flux measures the change ending at its centre: step back half a hop.
  times = np.maximum(0.0, (peaks - lead - 0.5) / frame_rate)
  return times, curve[peaks]


def taps_to_note_sequence(times: np.ndarray, strengths: np.ndarray, qpm: float = 120.0):
  """Drum taps (one pitch) in 4/4 at ``qpm``; velocity from strength (40..127)."""
  ns = music_pb2.NoteSequence()
  ns.tempos.add(qpm=qpm)
  ns.time_signatures.add(numerator=4, denominator=4)
  ns.ticks_per_quarter = 220
  duration = 60.0 / qpm / 4
  for t, s in zip(times, strengths):
    ns.notes.add(pitch=TAP_PITCH, velocity=int(np.clip(40 + 87 * s, 1, 127)),
                 start_time=float(t), end_time=float(t) + duration, is_drum=True,
                 instrument=9)
  ns.total_time = float(times[-1]) + duration if len(times) else 0.0
  return ns


def wav_to_taps(path: str | os.PathLike, qpm: float = 120.0, threshold: float = 0.1,
                offset: float = 0.0):
  """A WAV of tapping -> tap NoteSequence; ``AudioError`` when no tap is heard.

  ``threshold``: how far (0..1 of the strongest onset) a tap must rise above the local
  average novelty; lower finds softer taps. ``offset``: seconds taken off every onset (a
  lead-in before the first downbeat, or recording latency); taps more than half a 16th
  before it are dropped, those within it land on t=0.
  """
  if not 0.0 <= threshold < 1.0:
    raise AudioError(f"tap threshold must be in [0, 1), got {threshold}")
  audio, rate = read_wav(path)
  times, strengths = detect_onsets(audio, rate, threshold)
  if not len(times):
    raise AudioError(f"{path}: no taps detected; record louder taps or lower the threshold")
  times = times - offset
  keep = times > -7.5 / qpm
  if not keep.any():
    raise AudioError(f"{path}: all {len(times)} taps come before the {offset:g} s offset")
  times, strengths = np.maximum(times[keep], 0.0), strengths[keep]
  return taps_to_note_sequence(times, strengths, qpm)


def click_track(times: np.ndarray, rate: int = 16000, length: float | None = None,
                amplitudes: np.ndarray | None = None, noise: float = 0.0,
                seed: int = 0) -> np.ndarray:
  """A synthetic tapping recording: decaying noise bursts at ``times`` (tests, demos)."""
  rng = np.random.default_rng(seed)
  length = length if length is not None else (max(times, default=0.0) + 0.5)
  out = noise * rng.standard_normal(int(length * rate))
  burst_n = int(0.03 * rate)
  burst = rng.standard_normal(burst_n) * np.exp(-np.arange(burst_n) / (0.005 * rate))
  amplitudes = np.ones(len(times)) if amplitudes is None else amplitudes
  for t, a in zip(times, amplitudes):
    start = int(round(t * rate))
    seg = out[start:start + burst_n]
    seg += a * 0.5 * burst[:len(seg)]
  return np.clip(out, -1.0, 1.0)
