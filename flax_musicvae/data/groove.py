"""GrooVAE's hit / velocity / offset drum representation (Magenta's ``GrooveConverter``).

Every 16th-note step holds, per drum class, ``hit`` (0/1), ``velocity / 127`` and the
timing ``offset`` in [-1, 1] (twice the distance, in steps, from the quantized onset
back to the played onset: positive = played early). With 9 classes a step is the
27-vector ``hits[9] | velocities[9] | offsets[9]``. When several notes of one class
share a step, the loudest (the first of equally loud ones) is kept.

Input-side corruptions (the outputs always keep the full performance) follow Magenta:
note dropout, then ``tapify``, ``humanize``, ``fixed_velocities``, ``add_instruments``.
Only 4/4 material with a single tempo gives examples. The categorical
(``num_velocity_bins``/``num_offset_bins``) and ``split_instruments`` variants, which
no Magenta config uses, are not implemented.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Sequence

import note_seq
import numpy as np
from note_seq import drums_encoder_decoder
from note_seq import sequences_lib
from note_seq.protobuf import music_pb2

from flax_musicvae.data.converter import Converter, ConverterTensors, Mode

PitchClasses = tuple[tuple[int, ...], ...]

#: Roland TD-11 (Groove MIDI Dataset) pitches grouped into the 9 drum classes.
ROLAND_DRUM_PITCH_CLASSES: PitchClasses = (
    (36,),  # kick
    (38, 37, 40),  # snare
    (42, 22, 44),  # closed hi-hat
    (46, 26),  # open hi-hat
    (43, 58),  # low tom
    (47, 45),  # mid tom
    (50, 48),  # high tom
    (49, 52, 55, 57),  # crash
    (51, 53, 59),  # ride
)
#: note_seq's General MIDI drum classes (Magenta's ``REDUCED_DRUM_PITCH_CLASSES``).
REDUCED_DRUM_PITCH_CLASSES: PitchClasses = tuple(
    tuple(pitches) for pitches in drums_encoder_decoder.DEFAULT_DRUM_TYPE_PITCHES)

#: Index of the open hi-hat class, where ``tapify`` puts every hit.
_TAP_CLASS = 3
_DECODE_QPM = 120.0
_QUANTIZATION_ERRORS = (
    note_seq.BadTimeSignatureError, note_seq.NonIntegerStepsPerBarError,
    note_seq.NegativeTimeError, note_seq.MultipleTimeSignatureError,
    note_seq.MultipleTempoError)


def _as_pitch_classes(classes: Sequence[Sequence[int]]) -> PitchClasses:
  return tuple(tuple(int(p) for p in pitches) for pitches in classes)


def _pitch_lookup(classes: PitchClasses) -> np.ndarray:
  """``lookup[pitch]`` = class index, -1 for pitches in no class."""
  lookup = np.full(128, -1, np.int64)
  for index, pitches in enumerate(classes):
    lookup[list(pitches)] = index
  return lookup


@dataclasses.dataclass(frozen=True)
class GrooveConverter(Converter):
  """Drum performances <-> ``[steps, 3 * num_drums]`` hit/velocity/offset tensors.

  Attributes:
    split_bars: window length in bars (``None``: the whole sequence is one example).
    steps_per_quarter: quantization steps per quarter note.
    quarters_per_bar: quarter notes per bar (only sequences with this bar length,
      i.e. 4/4 by default, give examples).
    max_tensors_per_notesequence: kept for config compatibility; ignored, as in Magenta.
    pitch_classes: drum pitches grouped per class (train/eval); default Roland.
    inference_pitch_classes: classes used in infer mode and when decoding;
      default ``pitch_classes``.
    humanize: zero the input velocities and offsets (learn to add groove).
    tapify: put every input step's loudest hit on the open hi-hat (Tap2Drum).
    add_instruments: class indices removed from the inputs (infilling).
    hop_size: window hop in steps (default: the window length).
    hits_as_controls: pass the target hits as a ``num_drums``-dim control sequence.
    fixed_velocities: zero the input velocities.
    max_note_dropout_probability: per sequence draw ``q ~ U(0, p)`` and drop each
      input hit with probability ``q * max(0.2, 1 - velocity)``; needs ``rng``.
  """

  split_bars: int | None = None
  steps_per_quarter: int = 4
  quarters_per_bar: int = 4
  max_tensors_per_notesequence: int | None = 8
  pitch_classes: PitchClasses | None = None
  inference_pitch_classes: PitchClasses | None = None
  humanize: bool = False
  tapify: bool = False
  add_instruments: tuple[int, ...] | None = None
  hop_size: int | None = None
  hits_as_controls: bool = False
  fixed_velocities: bool = False
  max_note_dropout_probability: float | None = None

  presplit_on_time_changes = False

  def __post_init__(self):
    classes = _as_pitch_classes(self.pitch_classes or ROLAND_DRUM_PITCH_CLASSES)
    infer_classes = _as_pitch_classes(self.inference_pitch_classes or classes)
    if len(classes) != len(infer_classes):
      raise ValueError(
          "Training and inference must have the same number of pitch classes, got "
          f"{len(classes)} vs {len(infer_classes)}")
    if self.split_bars is None and self.hop_size is not None:
      raise ValueError("hop_size needs split_bars")
    object.__setattr__(self, "pitch_classes", classes)
    object.__setattr__(self, "inference_pitch_classes", infer_classes)
    if self.add_instruments is not None:
      object.__setattr__(self, "add_instruments", tuple(self.add_instruments))

  @property
  def num_drums(self) -> int:
    return len(self.pitch_classes)

  @property
  def steps_per_bar(self) -> int:
    return self.steps_per_quarter * self.quarters_per_bar

  @property
  def input_depth(self) -> int:
    return 3 * self.num_drums

  @property
  def output_depth(self) -> int:
    return 3 * self.num_drums

  @property
  def control_depth(self) -> int:
    return self.num_drums if self.hits_as_controls else 0

  def classes_for(self, mode: Mode | str) -> PitchClasses:
    return (self.inference_pitch_classes if Mode(mode) == Mode.INFER
            else self.pitch_classes)

  @functools.cached_property
  def _lookups(self) -> dict[Mode, np.ndarray]:
    return {mode: _pitch_lookup(self.classes_for(mode)) for mode in Mode}

  def to_tensors(self, ns: music_pb2.NoteSequence, mode: Mode | str = Mode.EVAL,
                 rng: np.random.Generator | None = None) -> ConverterTensors:
    """All windows of ``ns`` (no split on time changes, no sampling: as Magenta)."""
    return self._to_tensors(ns, Mode(mode), rng)

  def _to_tensors(self, ns: music_pb2.NoteSequence, mode: Mode,
                  rng: np.random.Generator | None) -> ConverterTensors:
    try:
      qns = sequences_lib.quantize_note_sequence(ns, self.steps_per_quarter)
    except _QUANTIZATION_ERRORS:
      return ConverterTensors()
    if sequences_lib.steps_per_bar_in_quantized_sequence(qns) != self.steps_per_bar:
      return ConverterTensors()
    notes = qns.notes
    return self.encode_notes(
        steps=np.array([n.quantized_start_step for n in notes], np.int64),
        pitches=np.array([n.pitch for n in notes], np.int64),
        velocities=np.array([n.velocity for n in notes], np.int64),
        start_times=np.array([n.start_time for n in notes], np.float64),
        qpm=qns.tempos[0].qpm, mode=mode, rng=rng)

  def encode_notes(self, steps: np.ndarray, pitches: np.ndarray,
                   velocities: np.ndarray, start_times: np.ndarray, qpm: float,
                   mode: Mode | str = Mode.EVAL,
                   rng: np.random.Generator | None = None) -> ConverterTensors:
    """Examples from the notes of one quantized sequence, in NoteSequence order.

    ``steps`` are the notes' quantized start steps, ``start_times`` their onsets in
    seconds and ``qpm`` the sequence tempo (for the offsets).
    """
    if not len(steps):
      return ConverterTensors()
    lookup = self._lookups[Mode(mode)]
    if np.any((pitches < 0) | (pitches > 127)) or np.any(lookup[pitches] < 0):
      unknown = sorted({int(p) for p in pitches if not 0 <= p < 128 or lookup[p] < 0})
      raise ValueError(f"drum pitches {unknown} belong to no pitch class of "
                       f"{self.classes_for(mode)}")
    grid = self._grid(steps, lookup[pitches], velocities, start_times, qpm)
    return self._examples(grid, rng)

  def _grid(self, steps, classes, velocities, start_times, qpm) -> np.ndarray:
    """Full performance ``[steps, 3, num_drums]``: hit, velocity and offset grids."""
    step_length = 60.0 / qpm / self.steps_per_quarter
    total_bars = int(np.ceil((steps.max() + 1) / self.steps_per_bar))
    # Loudest note per (step, class); the first one among equally loud notes.
    loudness = velocities.max() - velocities
    key = (steps * self.num_drums + classes) * (loudness.max() + 1) + loudness
    order = np.argsort(key, kind="stable")
    cell = key[order] // (loudness.max() + 1)
    kept = order[np.r_[True, cell[1:] != cell[:-1]]]
    grid = np.zeros((self.steps_per_bar * total_bars, 3, self.num_drums))
    at = steps[kept], classes[kept]
    grid[at[0], 0, at[1]] = 1.0
    grid[at[0], 1, at[1]] = velocities[kept] / 127.0
    grid[at[0], 2, at[1]] = (
        step_length * steps[kept] - start_times[kept]) / step_length * 2
    return grid

  def _corrupt_inputs(self, grid: np.ndarray, rng) -> np.ndarray:
    """Encoder inputs: the grid after dropout, tapify, humanize, etc. (``grid``
    itself when no corruption is configured)."""
    if not (self.max_note_dropout_probability is not None or self.tapify or
            self.humanize or self.fixed_velocities or self.add_instruments):
      return grid
    corrupted = grid.copy()
    in_hits, in_vels, in_offsets = corrupted[:, 0], corrupted[:, 1], corrupted[:, 2]
    if self.max_note_dropout_probability is not None:
      if rng is None:
        raise ValueError("note dropout is random: pass rng=np.random.Generator")
      probability = rng.uniform(0.0, self.max_note_dropout_probability)
      keep = 1 - rng.binomial(1, np.maximum(0.2, 1 - in_vels) * probability)
      in_hits *= keep
      in_vels *= keep
      in_offsets *= keep
    if self.tapify:
      loudest = (np.arange(len(grid)), np.argmax(in_vels, axis=1))
      for feature in range(3):
        source = grid[:, feature][loudest]
        corrupted[:, feature] = 0
        corrupted[:, feature, _TAP_CLASS] = source
    if self.humanize:
      in_vels[:] = 0
      in_offsets[:] = 0
    if self.fixed_velocities:
      in_vels[:] = 0
    if self.add_instruments:
      corrupted[:, :, list(self.add_instruments)] = 0
    return corrupted

  def _examples(self, grid: np.ndarray, rng) -> ConverterTensors:
    steps = len(grid)
    outputs = grid.reshape(steps, -1).astype(np.float32)
    corrupted = self._corrupt_inputs(grid, rng)
    inputs = (outputs if corrupted is grid
              else corrupted.reshape(steps, -1).astype(np.float32))
    controls = (grid[:, 0].astype(np.float32) if self.hits_as_controls
                else np.zeros((steps, 0), np.float32))
    if self.split_bars:
      window = self.steps_per_bar * self.split_bars
      starts = range(0, steps - window + 1, self.hop_size or window)
    else:
      window, starts = steps, [0]
    pick = lambda a: [a[s:s + window] for s in starts]  # noqa: E731
    return ConverterTensors(pick(inputs), pick(outputs), pick(controls),
                            [window] * len(starts))

  def from_tensors(self, samples: Sequence[np.ndarray],
                   controls: Sequence[np.ndarray] | None = None,
                   mode: Mode | str = Mode.INFER) -> list[music_pb2.NoteSequence]:
    """``[steps, 3 * num_drums]`` tensors -> drum NoteSequences at 120 qpm.

    A hit is ``> 0.5``; its pitch is the first of its class (``inference_pitch_classes``
    in infer mode, as Magenta's TrainedModel uses), velocity ``round(v * 127)``
    clipped to [0, 127], onset ``(step - offset / 2) * step_length`` with the
    half-offset clipped to [-0.5, 0.5]. ``controls`` are ignored (as in Magenta).
    """
    del controls
    classes = self.classes_for(mode)
    step_length = 60.0 / _DECODE_QPM / self.steps_per_quarter
    sequences = []
    for sample in samples:
      sample = np.asarray(sample)
      if sample.ndim != 2 or sample.shape[1] != self.output_depth:
        raise ValueError(f"expected a [steps, {self.output_depth}] sample, got "
                         f"shape {sample.shape}")
      ns = music_pb2.NoteSequence()
      ns.tempos.add(qpm=_DECODE_QPM)
      for i, step in enumerate(sample):
        hits, vels, offsets = np.split(step, 3)
        for j in np.flatnonzero(hits > 0.5):
          offset = np.clip(offsets[j] / 2, -0.5, 0.5)
          start = (i - offset) * step_length
          ns.notes.add(pitch=classes[j][0], instrument=9, is_drum=True,
                       velocity=int(np.clip(int(np.round(vels[j] * 127)), 0, 127)),
                       start_time=start, end_time=start + step_length)
      sequences.append(ns)
    return sequences
