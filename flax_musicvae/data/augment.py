"""Transposition augmentation of cached one-hot training batches.

Magenta's ``NoteSequenceAugmenter(transpose_range=(-R, R))`` transposes each training
NoteSequence by a uniform random amount before conversion. Here the examples are
converted once and cached, so the same augmentation is applied to the arrays of every
training batch: each example is shifted by its own amount, drawn uniformly from the
amounts in ``[-R, R]`` that keep all of its notes inside the converter's pitch range.
(Magenta instead deletes the notes that fall out of range; that only differs for
examples that touch the ends of the 88-key range.)

What moves: the pitch tokens of one-hot melody blocks (melody; melody and bass of a
trio) and the note-on / note-off tokens of multi-instrument performances in ``inputs`` and
``outputs``, and the roots of triad chord controls. Drum
blocks, the no-event / note-off / end tokens and "no chord" stay put.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from flax_musicvae.data import chords
from flax_musicvae.data.converter import Converter
from flax_musicvae.data.melody import OneHotMelodyConverter
from flax_musicvae.data.multiperf import MultiInstrumentPerformanceConverter
from flax_musicvae.data.trio import TrioConverter

Batch = dict[str, np.ndarray]
#: One-hot melody tokens before the first pitch: no-event, note-off.
NUM_SPECIAL_TOKENS = 2


@dataclasses.dataclass(frozen=True)
class PitchBlock:
  """Columns ``[start, start + num_pitches)`` of a one-hot block are ascending semitones."""
  start: int
  num_pitches: int


@dataclasses.dataclass(frozen=True)
class Transposer:
  """Random transposition of the batches of one representation."""
  max_shift: int
  pitch_blocks: tuple[PitchBlock, ...]
  chord_controls: bool

  def shift_bounds(self, batch: Batch) -> tuple[np.ndarray, np.ndarray]:
    """Per example, the lowest and highest shift in ``[-R, R]`` keeping notes in range."""
    n = len(batch["lengths"])
    low, high = np.full(n, -self.max_shift), np.full(n, self.max_shift)
    for field in ("inputs", "outputs"):
      for block in self.pitch_blocks:
        active = batch[field][..., block.start:block.start + block.num_pitches].any(axis=1)
        used = active.any(axis=-1)
        lowest = np.argmax(active, axis=-1)
        highest = block.num_pitches - 1 - np.argmax(active[:, ::-1], axis=-1)
        low = np.where(used, np.maximum(low, -lowest), low)
        high = np.where(used, np.minimum(high, block.num_pitches - 1 - highest), high)
    return low, high

  def random_shifts(self, batch: Batch, uniforms: np.ndarray) -> np.ndarray:
    """One uniform shift per example among the ones that keep its notes in range.

    ``uniforms`` are per-example draws in ``[0, 1)`` (given, not drawn here, so that every
    host of a multi-host run picks the same shifts for the same global batch).
    """
    low, high = self.shift_bounds(batch)
    return np.minimum(low + np.floor(uniforms * (high - low + 1)).astype(int), high)

  def apply(self, batch: Batch, shifts: np.ndarray) -> Batch:
    """``batch`` with example ``b`` transposed by ``shifts[b]`` semitones (a copy)."""
    low, high = self.shift_bounds(batch)
    if np.any((shifts < low) | (shifts > high)):
      raise ValueError("a shift moves notes out of the pitch range or exceeds max_shift")
    return self._shifted(batch, shifts)

  def _shifted(self, batch: Batch, shifts: np.ndarray) -> Batch:
    """``batch`` transposed by in-range ``shifts`` (a copy; nothing checked)."""
    out = {k: v.copy() for k, v in batch.items()}
    for shift in np.unique(shifts[shifts != 0]):
      rows = shifts == shift
      for field in ("inputs", "outputs"):
        for block in self.pitch_blocks:
          cols = slice(block.start, block.start + block.num_pitches)
          out[field][rows, :, cols] = np.roll(batch[field][rows, :, cols], shift, axis=-1)
      if self.chord_controls:
        out["controls"][rows] = batch["controls"][rows][..., chord_source_columns(int(shift))]
    return out

  def __call__(self, batch: Batch, uniforms: np.ndarray) -> Batch:
    """``batch`` with random in-range shifts (the bounds are computed once)."""
    return self._shifted(batch, self.random_shifts(batch, uniforms))


def chord_source_columns(shift: int) -> np.ndarray:
  """Gather indices moving every triad class's root up by ``shift`` (N.C. stays)."""
  cls = np.arange(chords.NUM_TRIAD_CLASSES)
  quality, root = np.divmod(cls[1:] - 1, 12)
  src = cls.copy()
  src[1:] = 1 + 12 * quality + (root - shift) % 12
  return src


def _melody_block(conv: OneHotMelodyConverter, start: int) -> PitchBlock:
  return PitchBlock(start + NUM_SPECIAL_TOKENS, conv.max_pitch - conv.min_pitch + 1)


def make_transposer(converter: Converter, max_shift: int) -> Transposer | None:
  """The transposer for ``converter``'s arrays, or None when ``max_shift`` is 0."""
  if max_shift < 0:
    raise ValueError(f"data.augment_transpose must be >= 0, got {max_shift}")
  if max_shift == 0:
    return None
  if isinstance(converter, OneHotMelodyConverter):
    return Transposer(max_shift, (_melody_block(converter, 0),),
                      converter.chord_encoding == "triad")
  if isinstance(converter, TrioConverter):
    mel = converter.melody_converter
    return Transposer(max_shift, (_melody_block(mel, 0), _melody_block(mel, mel.output_depth)),
                      mel.chord_encoding == "triad")
  if isinstance(converter, MultiInstrumentPerformanceConverter):
    # Note-on then note-off blocks of the performance encoding. Unlike Magenta's
    # NoteSequence transposition, a drum track's tokens move too (they are pitches).
    pitches = converter.max_pitch - converter.min_pitch + 1
    return Transposer(max_shift, (PitchBlock(0, pitches), PitchBlock(pitches, pitches)),
                      converter.chord_encoding == "triad")
  raise ValueError(f"data.augment_transpose={max_shift} needs pitched one-hot data (melody, "
                   f"trio or multiperf); {type(converter).__name__} has no pitches to "
                   "transpose")
