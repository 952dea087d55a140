"""The dataset's files: its folder or official zip, and info.csv's official splits."""

from __future__ import annotations

import collections
import csv
import io
import os
import pathlib
import zipfile


SPLITS = ("train", "validation", "test")
METADATA_FIELDS = ("id", "midi_filename", "drummer", "session", "style", "bpm",
                   "beat_type", "time_signature")


class _Source:
  """The dataset's ``groove/`` folder, a folder holding it, or the official zip."""

  def __init__(self, root: str | os.PathLike):
    root = pathlib.Path(root)
    self._zip = None
    if root.is_file() and zipfile.is_zipfile(root):
      self._zip = zipfile.ZipFile(root)
      names = set(self._zip.namelist())
      prefixes = [p for p in ("groove/", "") if p + "info.csv" in names]
      if not prefixes:
        raise FileNotFoundError(f"{root} has no groove/info.csv")
      self._prefix = prefixes[0]
    else:
      folders = [f for f in (root, root / "groove") if (f / "info.csv").is_file()]
      if not folders:
        raise FileNotFoundError(
            f"no info.csv in {root} or {root / 'groove'}: pass the Groove MIDI "
            "Dataset folder, the folder holding 'groove/', or the official zip")
      self._folder = folders[0]

  def read(self, name: str) -> bytes:
    if self._zip is not None:
      return self._zip.read(self._prefix + name)
    return (self._folder / name).read_bytes()

  def read_midi(self, name: str) -> bytes | None:
    """A listed MIDI file's bytes; ``None`` when it cannot be read (see ``unreadable``)."""
    try:
      return self.read(name)
    except (OSError, KeyError):
      return None

  def unreadable(self, name: str) -> str:
    """Why ``read_midi(name)`` gave nothing: the skip reason."""
    if self._zip is not None:
      return "missing_file"
    file = self._folder / name
    if file.is_symlink() and not file.exists():
      return "broken_link"
    if file.is_dir():
      return "directory"
    if not file.exists():
      return "missing_file"
    try:
      file.read_bytes()
    except OSError as e:
      return f"unreadable: {e.strerror or type(e).__name__}"
    return "unreadable"


def read_split_index(root: str | os.PathLike) -> dict[str, list[dict]]:
  """The official split: info.csv rows grouped by their ``split``, in file order."""
  text = _Source(root).read("info.csv").decode("utf-8")
  rows = collections.defaultdict(list)
  for row in csv.DictReader(io.StringIO(text)):
    rows[row["split"]].append(row)
  return dict(rows)


def _bar_seconds(row: dict) -> float:
  """tfds: ``60 / bpm * beats_per_bar`` (numerator of the time signature)."""
  return 60 / int(row["bpm"]) * int(row["time_signature"].split("-")[0])
