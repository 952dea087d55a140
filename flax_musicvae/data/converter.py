"""Common interface of every representation (Magenta's ``BaseNoteSequenceConverter``).

A converter is an immutable description of a representation. ``to_tensors`` turns one
``NoteSequence`` into zero or more examples; ``from_tensors`` turns model outputs back
into NoteSequences. Modes follow Magenta: ``train`` randomly samples at most
``max_tensors_per_notesequence`` examples (with the caller's ``rng``), ``eval`` keeps the
first ones, ``infer`` keeps all and may use inference-only settings (e.g. GrooVAE's
reduced drum classes).
"""

from __future__ import annotations

import abc
import dataclasses
import enum
from typing import Sequence

import numpy as np
from note_seq import sequences_lib
from note_seq.protobuf import music_pb2


class Mode(str, enum.Enum):
  TRAIN = "train"
  EVAL = "eval"
  INFER = "infer"


@dataclasses.dataclass
class ConverterTensors:
  """Examples extracted from one NoteSequence; each list has one entry per example.

  ``inputs``/``outputs``/``controls`` entries are float32 arrays ``[steps, depth]``
  (``controls`` has depth 0 when a representation has no controls).
  """

  inputs: list[np.ndarray] = dataclasses.field(default_factory=list)
  outputs: list[np.ndarray] = dataclasses.field(default_factory=list)
  controls: list[np.ndarray] = dataclasses.field(default_factory=list)
  lengths: list[int] = dataclasses.field(default_factory=list)

  def __len__(self) -> int:
    return len(self.lengths)

  def extend(self, other: "ConverterTensors") -> None:
    self.inputs += other.inputs
    self.outputs += other.outputs
    self.controls += other.controls
    self.lengths += other.lengths

  def select(self, indices: Sequence[int]) -> "ConverterTensors":
    return ConverterTensors(
        [self.inputs[i] for i in indices], [self.outputs[i] for i in indices],
        [self.controls[i] for i in indices], [self.lengths[i] for i in indices])


def sample_examples(tensors: ConverterTensors, max_examples: int | None, mode: Mode,
                    rng: np.random.Generator | None) -> ConverterTensors:
  """Magenta's ``maybe_sample_items``: random subset in train mode, prefix in eval."""
  n = len(tensors)
  if max_examples is None or n <= max_examples:
    return tensors
  if mode == Mode.TRAIN:
    if rng is None:
      raise ValueError("train mode samples examples: pass rng=np.random.Generator")
    return tensors.select(sorted(rng.choice(n, size=max_examples, replace=False)))
  return tensors.select(range(max_examples))


class Converter(abc.ABC):
  """Base class. Subclasses are frozen dataclasses holding the representation's options."""

  #: Split on tempo / time-signature changes before extracting (Magenta's default True).
  presplit_on_time_changes: bool = True
  #: Upper bound on examples per NoteSequence (``None`` = all).
  max_tensors_per_notesequence: int | None = None

  @property
  @abc.abstractmethod
  def input_depth(self) -> int: ...

  @property
  @abc.abstractmethod
  def output_depth(self) -> int: ...

  @property
  def control_depth(self) -> int:
    return 0

  @property
  def end_token(self) -> int | None:
    return None

  @abc.abstractmethod
  def _to_tensors(self, ns: music_pb2.NoteSequence, mode: Mode,
                  rng: np.random.Generator | None) -> ConverterTensors:
    """Examples of one NoteSequence without time changes (all of them, unsampled)."""

  @abc.abstractmethod
  def from_tensors(self, samples: Sequence[np.ndarray],
                   controls: Sequence[np.ndarray] | None = None
                   ) -> list[music_pb2.NoteSequence]:
    """Model outputs ``[steps, output_depth]`` -> NoteSequences."""

  def to_tensors(self, ns: music_pb2.NoteSequence, mode: Mode | str = Mode.EVAL,
                 rng: np.random.Generator | None = None) -> ConverterTensors:
    """All examples of ``ns`` (after the optional split on time changes), sampled per mode."""
    mode = Mode(mode)
    pieces = (sequences_lib.split_note_sequence_on_time_changes(ns)
              if self.presplit_on_time_changes else [ns])
    out = ConverterTensors()
    for piece in pieces:
      out.extend(self._to_tensors(piece, mode, rng))
    return sample_examples(out, self.max_tensors_per_notesequence, mode, rng)
