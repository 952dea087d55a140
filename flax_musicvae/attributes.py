"""Attribute vectors: MusicVAE's latent arithmetic (paper §5.3; code never released).

For an attribute (note density, syncopation, ...) measured on every example of a
dataset, the vector is ``mean(mu | top quartile) - mean(mu | bottom quartile)``; adding
``strength * vector`` to a z raises the attribute, subtracting lowers it. Vectors are
saved as ``.npz`` with their metadata (attribute, model, quantile, counts, thresholds).
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
from typing import Any, Callable

import numpy as np

STEPS_PER_QUARTER = 4


def _steps(ns) -> np.ndarray:
  qpm = ns.tempos[0].qpm if ns.tempos else 120.0
  return np.array([n.start_time for n in ns.notes]) * qpm / 60.0 * STEPS_PER_QUARTER


def _bars(ns) -> float:
  """Whole bars covered by ``ns.total_time`` (by the onsets when it is unset)."""
  qpm = ns.tempos[0].qpm if ns.tempos else 120.0
  if ns.total_time > 0:
    return max(1.0, np.ceil(ns.total_time * qpm / 60.0 / 4 - 1e-6))
  steps = _steps(ns)
  return max(1.0, np.ceil((np.round(steps).max() + 1) / 16)) if len(steps) else 1.0


def note_density(ns) -> float:
  """Notes (drum hits) per bar."""
  return len(ns.notes) / _bars(ns)


def syncopation(ns) -> float:
  """Fraction of onsets on 16th positions between 8th notes (the paper's 16th syncopation)."""
  steps = np.round(_steps(ns)).astype(int)
  return float(np.mean(steps % 2 == 1)) if len(steps) else 0.0


def mean_velocity(ns) -> float:
  return float(np.mean([n.velocity for n in ns.notes])) if ns.notes else 0.0


def timing_offset(ns) -> float:
  """Mean signed distance of onsets from the 16th grid, in steps (positive = late)."""
  steps = _steps(ns)
  return float(np.mean(steps - np.round(steps))) if len(steps) else 0.0


ATTRIBUTES: dict[str, Callable[[Any], float]] = {
    "note_density": note_density,
    "syncopation": syncopation,
    "mean_velocity": mean_velocity,
    "timing_offset": timing_offset,
}


@dataclasses.dataclass
class AttributeVector:
  name: str
  vector: np.ndarray
  metadata: dict[str, Any]

  def save(self, path: str | os.PathLike) -> pathlib.Path:
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, vector=self.vector, name=self.name, metadata=json.dumps(self.metadata))
    return path

  @classmethod
  def load(cls, path: str | os.PathLike) -> "AttributeVector":
    with np.load(path) as f:
      return cls(str(f["name"]), f["vector"], json.loads(str(f["metadata"])))

  def apply(self, z: np.ndarray, strength=1.0) -> np.ndarray:
    """``z + strength * vector``; ``strength`` is a scalar or one value per row of z."""
    z = np.asarray(z, np.float32)
    if z.shape[-1] != self.vector.shape[-1]:
      raise ValueError(f"attribute vector {self.name!r} has {self.vector.shape[-1]} dims but "
                       f"z has {z.shape[-1]}: it was computed for another model")
    return z + np.asarray(strength, np.float32)[..., None] * self.vector


def attribute_values(model, outputs: np.ndarray, controls: np.ndarray | None,
                     attribute: str) -> np.ndarray:
  """The attribute of each example's target (decoded back to a NoteSequence)."""
  if attribute not in ATTRIBUTES:
    raise ValueError(f"unknown attribute {attribute!r}; known: {sorted(ATTRIBUTES)}")
  sequences = model.to_sequences(outputs, controls if controls is not None and
                                 controls.shape[-1] else None)
  for ns, out in zip(sequences, outputs):  # the window's length, empty bars included
    qpm = ns.tempos[0].qpm if ns.tempos else 120.0
    ns.total_time = len(out) * 60.0 / qpm / STEPS_PER_QUARTER
  return np.array([ATTRIBUTES[attribute](ns) for ns in sequences])


def compute_attribute_vector(model, data: dict[str, np.ndarray], attribute: str,
                             quantile: float = 0.25, seed: int = 0) -> AttributeVector:
  """Mean posterior-mean difference between the top and bottom ``quantile`` of ``data``.

  ``data`` has the model's ``inputs``, ``outputs``, ``controls`` and ``lengths`` arrays
  (e.g. ``input_pipeline.load_split(config, 'validation')``).
  """
  if not 0.0 < quantile <= 0.5:
    raise ValueError(f"quantile must be in (0, 0.5], got {quantile}")
  controls = data.get("controls")
  values = attribute_values(model, data["outputs"], controls, attribute)
  low, high = np.quantile(values, [quantile, 1.0 - quantile])
  top, bottom = values >= high, values <= low
  if not top.any() or not bottom.any() or (top == bottom).all():
    raise ValueError(f"{attribute!r} does not vary over the {len(values)} examples: need a "
                     "larger or more varied dataset")
  _, mu, _ = model.encode_tensors(data["inputs"], data["lengths"], controls, seed)
  vector = mu[top].mean(0) - mu[bottom].mean(0)
  metadata = {"attribute": attribute, "model": model.config.get("name", ""),
              "quantile": quantile, "num_examples": int(len(values)),
              "num_top": int(top.sum()), "num_bottom": int(bottom.sum()),
              "top_threshold": float(high), "bottom_threshold": float(low),
              "mean_top": float(values[top].mean()),
              "mean_bottom": float(values[bottom].mean())}
  return AttributeVector(attribute, vector.astype(np.float32), metadata)
