"""The run directory's layout: file names, errors, paths, the trainer's lock, atomic
writes and the data report."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from typing import Any, Iterator

from etils import epath
import jax

PathLike = str | os.PathLike
CHECKPOINTS = "checkpoints"
REJECTED = "rejected_checkpoints"
CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"
DATA_REPORT_FILE = "data_report.json"
LOCK_FILE = "lock"


class WorkdirError(Exception):
  """A run directory that cannot be used as asked; the message says why and what to do."""


class SaveError(RuntimeError):
  """A checkpoint could not be written (the message says why: e.g. no space left)."""


def path(workdir: PathLike) -> epath.Path:
  return epath.Path(workdir)


def is_local(p: PathLike) -> bool:
  return "://" not in os.fspath(p)


def replace_file(file: epath.Path, data: bytes) -> None:
  """Atomically replaces ``file``'s contents (a temporary file, then a rename)."""
  tmp = file.parent / f"{file.name}.tmp-{os.getpid()}"
  tmp.write_bytes(data)
  tmp.replace(file)


@contextlib.contextmanager
def lock(workdir: PathLike) -> Iterator[None]:
  """Holds ``workdir/lock`` (an flock, released by the OS even on kill -9).

  A second holder gets ``WorkdirError: <workdir> is in use by PID n``. Non-local
  directories are not locked: object stores have no atomic exclusive create, and
  every host of a multi-host run writes the same directory.
  """
  workdir = path(workdir)
  if not is_local(workdir) or jax.process_index() != 0:
    yield
    return
  workdir.mkdir(parents=True, exist_ok=True)
  fd = os.open(workdir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
  try:
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
      raise WorkdirError(f"{workdir} is in use by PID {holder}") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    yield
  finally:
    os.close(fd)


def update_data_report(workdir: PathLike, report: dict[str, Any]) -> None:
  """Sets the splits in ``report`` in the run's data report (others are kept)."""
  file = path(workdir) / DATA_REPORT_FILE
  merged = {**(json.loads(file.read_text()) if file.exists() else {}), **report}
  replace_file(file, (json.dumps(merged, indent=2) + "\n").encode())
