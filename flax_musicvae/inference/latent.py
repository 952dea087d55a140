"""Latent maths: paths and grids between codes (Magenta's slerp, magenta.js's lerp and
bilinear grid)."""

from __future__ import annotations

import numpy as np


def slerp(p0: np.ndarray, p1: np.ndarray, t: np.ndarray) -> np.ndarray:
  """Spherical interpolation (Magenta's ``_slerp``) for each ``t``: ``[len(t), z]``."""
  p0, p1 = np.asarray(p0, np.float64), np.asarray(p1, np.float64)
  cos = np.dot(p0 / np.linalg.norm(p0), p1 / np.linalg.norm(p1))
  omega = np.arccos(np.clip(cos, -1.0, 1.0))
  t = np.asarray(t, np.float64)[:, None]
  if np.sin(omega) < 1e-8:
    return ((1 - t) * p0 + t * p1).astype(np.float32)
  so = np.sin(omega)
  return (np.sin((1 - t) * omega) / so * p0 + np.sin(t * omega) / so * p1).astype(np.float32)


def lerp(p0: np.ndarray, p1: np.ndarray, t: np.ndarray) -> np.ndarray:
  t = np.asarray(t, np.float32)[:, None]
  return ((1 - t) * np.asarray(p0) + t * np.asarray(p1)).astype(np.float32)


def bilinear_grid(corners: np.ndarray, rows: int, cols: int) -> np.ndarray:
  """magenta.js's 4-corner grid: ``[rows, cols, z]`` from corners (top-left, top-right,
  bottom-left, bottom-right)."""
  c = np.asarray(corners, np.float32)
  if c.shape[0] != 4:
    raise ValueError(f"a grid needs 4 corners, got {c.shape[0]}")
  u = np.linspace(0, 1, cols, dtype=np.float32)[None, :, None]
  v = np.linspace(0, 1, rows, dtype=np.float32)[:, None, None]
  top = (1 - u) * c[0] + u * c[1]
  bottom = (1 - u) * c[2] + u * c[3]
  return (1 - v) * top + v * bottom
