"""A run's metrics: ``metrics.jsonl`` and TensorBoard event files per split (tensorboardX)."""

from __future__ import annotations

import json
import os
import struct
import types
from typing import Any, Iterator

from etils import epath
import tensorboardX
from tensorboardX import record_writer
from tensorboardX.proto import event_pb2
from tensorboardX.proto import summary_pb2

from flax_musicvae.io import tfrecord
from flax_musicvae.workdir.layout import METRICS_FILE
from flax_musicvae.workdir.layout import PathLike
from flax_musicvae.workdir.layout import path
from flax_musicvae.workdir.layout import replace_file


class _EpathFiles:
  """tensorboardX's file opener for object-store logdirs: through epath, as every other
  workdir file (tensorboardX's own gs:// and s3:// writers need their cloud SDKs)."""

  def directory_check(self, logdir: str) -> None:
    epath.Path(logdir).mkdir(parents=True, exist_ok=True)

  def open(self, file: str) -> types.SimpleNamespace:
    f = epath.Path(file).open("wb")
    # No ``fileno``: tensorboardX fsyncs files that have one, and object-store files refuse.
    return types.SimpleNamespace(write=f.write, flush=f.flush, close=f.close)


for _scheme in ("gs", "s3", "az"):  # epath's object stores
  record_writer.register_writer_factory(_scheme, _EpathFiles())


def event_files(logdir: PathLike) -> list[epath.Path]:
  """The TensorBoard event files in ``logdir``, in the (name) order TensorBoard reads them."""
  logdir = path(logdir)
  if not logdir.exists():
    return []
  return sorted(p for p in logdir.iterdir() if p.name.startswith("events.out.tfevents."))


def _event_records(file: epath.Path) -> Iterator[bytes]:
  """The records of an event file, up to one cut short (by a kill)."""
  with file.open("rb") as f:
    try:
      yield from tfrecord.read_records(f, os.fspath(file))
    except tfrecord.TFRecordCorruptionError:
      return


def read_events(file: PathLike) -> list[event_pb2.Event]:
  """The events of a TensorBoard event file, without TensorFlow."""
  return [event_pb2.Event.FromString(r) for r in _event_records(path(file))]


def read_metrics(workdir: PathLike) -> list[dict[str, Any]]:
  """The rows of the run's ``metrics.jsonl`` (``split``, ``step``, metrics), in write order."""
  file = path(workdir) / METRICS_FILE
  if not file.exists():
    return []
  return [json.loads(line) for line in file.read_text().splitlines() if line.strip()]


#: The one event file per split of runs written before tensorboardX; a resume renames it
#: so that it sorts before the files written since (TensorBoard reads them in name order).
LEGACY_EVENTS_FILE = "events.out.tfevents.flax_musicvae"
LEGACY_EVENTS_RENAMED = "events.out.tfevents.0.flax_musicvae"


class MetricWriter:
  """``metrics.jsonl`` (one line per write) plus TensorBoard events per split.

  ``resume_step``: a training run restarting at this step first drops every metric
  written after it (by a run killed after its last checkpoint), so each step appears once.
  The events are dropped from the files too, rather than hidden by a ``SessionLog.START``
  (tensorboardX's ``purge_step``): TensorBoard's Rust data server ignores those, and its
  Python loader ignores a run's first one.
  """

  #: Seconds between flushes of the event files (TensorBoard reloads every 5 s).
  FLUSH_SECS = 5

  def __init__(self, workdir: PathLike, enabled: bool = True, resume_step: int | None = None):
    self._enabled = enabled
    self._workdir = path(workdir)
    self._events: dict[str, tensorboardX.SummaryWriter] = {}
    file = self._workdir / METRICS_FILE
    if not enabled or resume_step is None:
      return
    if file.exists():
      lines = file.read_text().splitlines(keepends=True)
      kept = "".join(l for l in lines if l.strip() and json.loads(l)["step"] <= resume_step)
      if len(kept) != sum(map(len, lines)):
        replace_file(file, kept.encode())
    tensorboard = self._workdir / "tensorboard"
    for split in tensorboard.iterdir() if tensorboard.exists() else ():
      for events in event_files(split):
        if events.name == LEGACY_EVENTS_FILE:  # first in name order, as first written
          events.rename(events.parent / LEGACY_EVENTS_RENAMED)
          events = events.parent / LEGACY_EVENTS_RENAMED
        records = list(_event_records(events))
        kept = [r for r in records if event_pb2.Event.FromString(r).step <= resume_step]
        if len(kept) != len(records):
          replace_file(events, b"".join(map(tfrecord.frame, kept)))

  def write(self, split: str, step: int, metrics: dict[str, float]) -> None:
    if not self._enabled:
      return
    with (self._workdir / METRICS_FILE).open("a") as f:
      f.write(json.dumps({"split": split, "step": step, **metrics}) + "\n")
    writer = self._split(split)
    for tag, value in metrics.items():
      writer.add_scalar(tag, value, step)

  def images(self, split: str, step: int, pngs: dict[str, bytes]) -> None:
    """PNG images (e.g. the samples of an evaluation) to TensorBoard's Images tab."""
    if not (self._enabled and pngs):
      return
    values = []
    for tag, png in pngs.items():
      width, height = struct.unpack(">II", png[16:24])  # the IHDR chunk
      image = summary_pb2.Summary.Image(height=height, width=width, colorspace=4,  # RGBA
                                        encoded_image_string=png)
      values.append(summary_pb2.Summary.Value(tag=tag, image=image))
    self._split(split).file_writer.add_summary(summary_pb2.Summary(value=values), step)

  def _split(self, split: str) -> tensorboardX.SummaryWriter:
    if split not in self._events:
      logdir = self._workdir / "tensorboard" / split
      # A file per writer, numbered after the split's earlier ones: within one second
      # (its name's time) it neither replaces them nor sorts before them.
      number = len(event_files(logdir))
      self._events[split] = tensorboardX.SummaryWriter(
          os.fspath(logdir), flush_secs=self.FLUSH_SECS, filename_suffix=f".{number:04d}")
    return self._events[split]

  def close(self) -> None:
    for writer in self._events.values():
      writer.close()
