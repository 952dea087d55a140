"""SHA-256 of a file, read in 1 MB blocks (download checks and cache keys)."""

from __future__ import annotations

import hashlib
import os


def file_sha256(path: str | os.PathLike) -> str:
  """Hex SHA-256 of the bytes of ``path``."""
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    while block := f.read(1 << 20):
      digest.update(block)
  return digest.hexdigest()
