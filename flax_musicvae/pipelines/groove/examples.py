"""One file's examples, window by window, and why a window gives none (the converter
tail the reference and fast paths share)."""

from __future__ import annotations

import collections
import dataclasses

from flax_musicvae.data.converter import ConverterTensors, Mode
from flax_musicvae.data.groove import GrooveConverter


# Why a window gives no example.
NOT_4_4 = "not_4_4_or_tempo_change"
NO_NOTES = "no_notes"
TOO_SHORT = "last_bar_empty"


@dataclasses.dataclass
class FileExamples:
  """The examples of one file: per tfds window, its examples or why it has none."""

  windows: int = 0
  window_index: list[int] = dataclasses.field(default_factory=list)
  tensors: ConverterTensors = dataclasses.field(default_factory=ConverterTensors)
  dropped: collections.Counter = dataclasses.field(default_factory=collections.Counter)
  used_reference: bool = False

  def add(self, window: int, tensors: ConverterTensors | None, reason: str | None):
    self.windows = max(self.windows, window + 1)
    if reason is not None:
      self.dropped[reason] += 1
      return
    self.window_index += [window] * len(tensors)
    self.tensors.extend(tensors)


def _convert(converter: GrooveConverter, meter_ok: bool, notes: dict | None,
             mode: Mode, rng) -> tuple[ConverterTensors | None, str | None]:
  """Shared tail of both paths: the drop reasons, then the converter."""
  if not meter_ok:
    return None, NOT_4_4
  if notes is None or not len(notes["steps"]):
    return None, NO_NOTES
  try:
    tensors = converter.encode_notes(mode=mode, rng=rng, **notes)
  except ValueError as e:
    return None, f"conversion_error: {e}"
  return (tensors, None) if len(tensors) else (None, TOO_SHORT)
