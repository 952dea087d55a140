"""A split's converted examples as fixed-size arrays: padding, and the key of their cache."""

from __future__ import annotations

import hashlib
import json
from typing import Any, Iterable, Sequence

import numpy as np


def pad_tensors(tensors: Sequence[np.ndarray], steps: int, depth: int) -> np.ndarray:
  """``[N, steps, depth]`` float32: each ``[len, depth]`` tensor, zero-padded after its end."""
  out = np.zeros((len(tensors), steps, depth), np.float32)
  for i, t in enumerate(tensors):
    out[i, :len(t)] = t
  return out


def cache_key(version: str, settings: dict[str, Any], data: Iterable[bytes] = ()) -> str:
  """20 hex digits of SHA-256 over ``version``, the JSON ``settings`` and the ``data`` bytes.

  ``settings`` and ``data`` are everything that determines the cached arrays; bump
  ``version`` when the code that makes them changes.
  """
  digest = hashlib.sha256(json.dumps(dict(settings, version=version), sort_keys=True).encode())
  for chunk in data:
    digest.update(chunk)
  return digest.hexdigest()[:20]
