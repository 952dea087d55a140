"""The run directory: the one place that reads and writes a training run.

Layout (every path through ``etils.epath``, so ``gs://`` works wherever orbax does)::

  config.json            the run's config, written atomically once a restore succeeded
  checkpoints/<step>/    orbax: params, train (step, opt_state, rng), config, digest
  rejected_checkpoints/  unreadable or corrupt checkpoints, moved aside by the trainer
  metrics.jsonl          one line per logged step and split
  tensorboard/<split>/   one TensorBoard event file per split
  data_report.json       skipped data files and dropped windows, per split
  lock                   PID of the trainer using the directory (local paths)

Every checkpoint carries a sha256 of its arrays (``digest``): a restore that does not
reproduce it, or gives non-finite values, falls back to the next older checkpoint.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import hashlib
import io
import json
import os
import struct
import time
import types
from typing import Any, Iterator

from absl import logging
from etils import epath
from flax import traverse_util
import jax
import ml_collections
import numpy as np
import tensorboardX
from tensorboardX import record_writer
from tensorboardX.proto import event_pb2
from tensorboardX.proto import summary_pb2

from flax_musicvae import config_lib
from flax_musicvae import models
from flax_musicvae.io import tfrecord

PathLike = str | os.PathLike
CHECKPOINTS = "checkpoints"
REJECTED = "rejected_checkpoints"
CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"
DATA_REPORT_FILE = "data_report.json"
LOCK_FILE = "lock"
#: Config sections a resumed run may change; everything else must match config.json.
MUTABLE_SECTIONS = ("train",)
#: Keys outside MUTABLE_SECTIONS that may change too (where things live, not what they are).
MUTABLE_KEYS = ("name", "data.cache_dir")


class WorkdirError(Exception):
  """A run directory that cannot be used as asked; the message says why and what to do."""


class SaveError(RuntimeError):
  """A checkpoint could not be written (the message says why: e.g. no space left)."""


def path(workdir: PathLike) -> epath.Path:
  return epath.Path(workdir)


def is_local(p: PathLike) -> bool:
  return "://" not in os.fspath(p)


# ----------------------------------------------------------------------------- config


def _plain(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """The config as the JSON values it is stored as (tuples become lists)."""
  return json.loads(config.to_json_best_effort())


def absolute_data_paths(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """A copy with ``data.path``/``data.cache_dir`` absolute (relative: to the current directory)."""
  config = ml_collections.ConfigDict(config.to_dict())
  for key in ("path", "cache_dir"):
    value = config.data.get(key, "")
    if value and is_local(value):
      config.data[key] = os.path.abspath(os.path.expanduser(value))
  return config


def _merged(defaults: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
  return {**defaults, **{k: _merged(defaults[k], v) if isinstance(v, dict) and
                         isinstance(defaults.get(k), dict) else v for k, v in values.items()}}


def load_config(workdir: PathLike) -> ml_collections.ConfigDict:
  """``config.json`` of a run (keys added since it was written get their defaults).

  ``FileNotFoundError`` when ``workdir`` is not a run directory.
  """
  file = path(workdir) / CONFIG_FILE
  if not file.exists():
    raise FileNotFoundError(f"{file} not found: --workdir must be a training run directory "
                            "(python -m flax_musicvae.main --workdir=...)")
  stored = json.loads(file.read_text())
  return ml_collections.ConfigDict(_merged(_plain(config_lib.base_config()), stored))


def write_config(workdir: PathLike, config: ml_collections.ConfigDict) -> None:
  """Writes ``config.json`` atomically (a temporary file, then a rename)."""
  workdir = path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  _replace(workdir / CONFIG_FILE, (config.to_json_best_effort(indent=2) + "\n").encode())


def _flat(tree: Any, prefix: str = "") -> dict[str, Any]:
  if isinstance(tree, dict):
    return {k: v for key, sub in tree.items() for k, v in _flat(sub, f"{prefix}{key}.").items()}
  return {prefix[:-1]: tree}


def config_differences(stored: ml_collections.ConfigDict, given: ml_collections.ConfigDict
                       ) -> list[str]:
  """``key: stored -> given`` for every model/data key that differs (train etc. may)."""
  a, b = _flat(_plain(stored)), _flat(_plain(given))
  mutable = lambda k: k.split(".")[0] in MUTABLE_SECTIONS or k in MUTABLE_KEYS
  return [f"{k}: {a.get(k, '<unset>')} -> {b.get(k, '<unset>')}"
          for k in sorted(set(a) | set(b)) if not mutable(k) and a.get(k) != b.get(k)]


def resolve_config(workdir: PathLike, given: ml_collections.ConfigDict | None
                   ) -> ml_collections.ConfigDict:
  """The config to run ``workdir`` with: ``given`` checked against config.json, or that.

  A new run needs ``given``. For an existing run, ``given`` may change the train
  settings (steps, logging, evaluation, checkpointing, learning rate, ...) but not the
  model or the data: those are refused with the list of differing keys.
  """
  stored = load_config(workdir) if (path(workdir) / CONFIG_FILE).exists() else None
  if given is None:
    if stored is None:
      raise WorkdirError(f"{workdir} has no {CONFIG_FILE}: pass --config to start a run")
    return stored
  given = absolute_data_paths(given)
  if stored is not None:
    diff = config_differences(stored, given)
    if diff:
      raise WorkdirError(
          f"--config differs from the run's {path(workdir) / CONFIG_FILE} in model/data "
          f"settings ({'; '.join(diff)}): leave out --config to continue this run, or "
          "use another --workdir")
  return given


# ----------------------------------------------------------------------------- lock


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


# ----------------------------------------------------------------------------- checkpoints


@dataclasses.dataclass
class Checkpoint:
  """One saved step: parameters, and for training the optimiser state and rng."""
  step: int
  params: Any
  opt_state: Any = None
  rng: Any = None

  def train_item(self) -> dict[str, Any] | None:
    if self.opt_state is None:
      return None
    return {"step": np.asarray(self.step, np.int32), "opt_state": self.opt_state, "rng": self.rng}


class CorruptCheckpointError(Exception):
  """A checkpoint whose contents are unreadable, altered or non-finite."""


def digest(tree: Any) -> str:
  """sha256 of a pytree's leaves (dtype, shape and bytes, in tree order)."""
  h = hashlib.sha256()
  for leaf in jax.device_get(jax.tree.leaves(tree)):
    leaf = np.asarray(leaf)
    h.update(f"{leaf.dtype}{leaf.shape}".encode())
    h.update(np.ascontiguousarray(leaf).tobytes())
  return h.hexdigest()


def non_finite(tree: Any) -> list[str]:
  """Paths of the float leaves holding NaN or inf."""
  bad = []
  for p, leaf in jax.tree_util.tree_leaves_with_path(jax.device_get(tree)):
    leaf = np.asarray(leaf)
    if np.issubdtype(leaf.dtype, np.floating) and not np.isfinite(leaf).all():
      bad.append(jax.tree_util.keystr(p))
  return bad


def abstract(tree: Any) -> Any:
  """Shapes, dtypes and shardings of ``tree`` (a restore target).

  Leaves without a sharding (numpy arrays, ``eval_shape`` results) go to this process's
  first device, so a checkpoint written by another topology (e.g. several hosts of a
  pod) still reads back here.
  """
  # lazy: a shipped model loads without orbax (tests/test_pretrained.py)
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  local = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])

  def leaf(x):
    s = ocp.utils.to_shape_dtype_struct(x)
    if isinstance(s, jax.ShapeDtypeStruct) and s.sharding is None:
      return jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=local)
    return s

  return jax.tree.map(leaf, tree)


def abstract_params(config: ml_collections.ConfigDict) -> Any:
  """The parameter structure of the model ``config`` describes (nothing computed)."""
  model = models.build_model(config)
  batch = models.dummy_batch(model.spec, 1)
  rngs = {k: jax.random.PRNGKey(0) for k in ("params", "dropout", "sample")}
  return jax.eval_shape(lambda: model.init(rngs, batch, train=False))["params"]


def _is_disk_full(e: BaseException) -> bool:
  while e is not None:
    if getattr(e, "errno", None) == errno.ENOSPC or "No space left" in str(e):
      return True
    e = e.__cause__ or e.__context__
  return False


class Checkpoints:
  """The orbax checkpoints in ``directory`` (a run's ``checkpoints/``), newest first.

  ``writer=True`` (the trainer, holding the lock): saves synchronously, keeps
  ``max_to_keep``, removes leftover ``*-tmp`` folders of interrupted saves and moves
  unusable checkpoints to ``rejected_checkpoints/`` beside ``directory``. Readers
  only skip them.
  """

  def __init__(self, directory: PathLike, *, writer: bool = False,
               max_to_keep: int | None = None):
    # lazy: a shipped model loads without orbax (tests/test_pretrained.py)
    import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
    self.directory = path(directory)
    self._writer = writer
    if writer:
      self._remove_tmp_leftovers()
    options = ocp.CheckpointManagerOptions(
        max_to_keep=max_to_keep, create=writer, enable_async_checkpointing=False)
    self._manager = ocp.CheckpointManager(self.directory, options=options)

  def _remove_tmp_leftovers(self) -> None:
    if not self.directory.exists():
      return
    for p in self.directory.iterdir():
      if "tmp" in p.name:
        logging.warning("removing %s, left by an interrupted save", p)
        p.rmtree()

  def __enter__(self) -> "Checkpoints":
    return self

  def __exit__(self, *exc_info) -> None:
    self.close()

  def close(self) -> None:
    self._manager.close()

  def steps(self) -> list[int]:
    return sorted(self._manager.all_steps())

  def save(self, checkpoint: Checkpoint, config: ml_collections.ConfigDict) -> bool:
    """Writes ``checkpoint`` and waits for it; False when that step already exists.

    Refuses non-finite values; a failed save leaves nothing behind and raises
    ``SaveError`` (naming a full disk as such).
    """
    # lazy: a shipped model loads without orbax (tests/test_pretrained.py)
    import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
    if checkpoint.step in self._manager.all_steps():
      return False
    items = {"params": checkpoint.params}
    train = checkpoint.train_item()
    if train is not None:
      items["train"] = train
    bad = non_finite(items)
    if bad:
      raise SaveError(f"refusing to save step {checkpoint.step}: non-finite values in "
                      f"{', '.join(bad[:5])}")
    args = {k: ocp.args.StandardSave(v) for k, v in items.items()}
    args["digest"] = ocp.args.JsonSave({k: digest(v) for k, v in items.items()})
    args["config"] = ocp.args.JsonSave(_plain(config))
    try:
      self._manager.save(checkpoint.step, args=ocp.args.Composite(**args))
      self._manager.wait_until_finished()
    except Exception as e:  # pylint: disable=broad-except
      self._remove_tmp_leftovers()
      reason = "no space left on device" if _is_disk_full(e) else f"{type(e).__name__}: {e}"
      raise SaveError(f"could not save checkpoint {checkpoint.step} to {self.directory}: "
                      f"{reason}") from e
    return True

  def digests(self, step: int) -> dict[str, str] | None:
    """The checksums saved with ``step`` (None for checkpoints written without them)."""
    # lazy: a shipped model loads without orbax (tests/test_pretrained.py)
    import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
    if not (self.directory / str(step) / "digest").exists():
      return None
    return self._manager.restore(step, args=ocp.args.Composite(
        digest=ocp.args.JsonRestore()))["digest"]

  def read(self, step: int, template: Checkpoint, params_only: bool = False) -> Checkpoint:
    """Checkpoint ``step`` shaped like ``template``, verified; ``CorruptCheckpointError``."""
    # lazy: a shipped model loads without orbax (tests/test_pretrained.py)
    import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
    items = {"params": template.params}
    if (not params_only and template.opt_state is not None
        and (self.directory / str(step) / "train").exists()):
      items["train"] = {"step": np.zeros((), np.int32), "opt_state": template.opt_state,
                        "rng": template.rng}
    try:
      sums = self.digests(step)
      restored = self._manager.restore(step, args=ocp.args.Composite(
          **{k: ocp.args.StandardRestore(abstract(v)) for k, v in items.items()}))
    except Exception as e:  # pylint: disable=broad-except
      first_line = (str(e).splitlines() or [""])[0][:300]
      raise CorruptCheckpointError(f"unreadable ({type(e).__name__}: {first_line})") from e
    for name in items:
      if sums is not None and digest(restored[name]) != sums[name]:
        raise CorruptCheckpointError(f"corrupt: its {name} do not match their checksum")
      bad = non_finite(restored[name])
      if bad:
        raise CorruptCheckpointError(f"non-finite: {name} {', '.join(bad[:5])}")
    train = restored["train"] if "train" in items else {}
    return Checkpoint(step, restored["params"], train.get("opt_state"), train.get("rng"))

  def restore(self, template: Checkpoint, *, params_only: bool = False
              ) -> Checkpoint | None:
    """The newest checkpoint that reads back intact, shaped like ``template``.

    Each unusable newer one is reported (and, for the writer, moved aside). ``None``
    when there is no checkpoint; ``WorkdirError`` when none is usable.
    ``opt_state``/``rng`` are ``None`` when not asked for or not saved.
    """
    steps = self.steps()
    if not steps:
      return None
    for step in reversed(steps):
      try:
        return self.read(step, template, params_only)
      except CorruptCheckpointError as e:
        self._reject(step, str(e))
    raise WorkdirError(f"no usable checkpoint under {self.directory} (tried steps "
                       f"{', '.join(map(str, reversed(steps)))})")

  def _reject(self, step: int, reason: str) -> None:
    source = self.directory / str(step)
    if not self._writer:
      logging.warning("skipping checkpoint %s, %s", source, reason)
      return
    target = self.directory.parent / REJECTED / f"{step}-{time.strftime('%Y%m%d-%H%M%S')}"
    target.parent.mkdir(parents=True, exist_ok=True)
    source.rename(target)
    self._manager.reload()
    logging.warning("checkpoint %s is %s: moved to %s, trying an older one", source,
                    reason, target)


def checkpoints_of(source: PathLike) -> tuple[epath.Path, int | None]:
  """(checkpoints folder, step or None) of a run directory, checkpoints folder or step folder."""
  source = path(os.path.expanduser(os.fspath(source)) if is_local(source) else source)
  if source.name.isdigit() and (source / "params").is_dir():
    return source.parent, int(source.name)
  if (source / CHECKPOINTS).is_dir():
    return source / CHECKPOINTS, None
  return source, None


def flatten_params(params: Any) -> dict[str, np.ndarray]:
  """``{"a/b/kernel": array}``: the .npz layout of params (cache, shipped models)."""
  return {"/".join(k): np.asarray(v) for k, v in traverse_util.flatten_dict(params).items()}


def unflatten_params(flat: dict[str, np.ndarray]) -> Any:
  """The params tree of :func:`flatten_params`'s dict."""
  return traverse_util.unflatten_dict({tuple(k.split("/")): v for k, v in flat.items()})


def load_params(source: PathLike, params_template: Any, cache_dir: PathLike | None = None
                ) -> tuple[Any, int]:
  """(params, step) of the newest usable checkpoint of a run, or of one step folder.

  ``source``: a run directory, its ``checkpoints`` folder or a ``checkpoints/<step>``
  folder; ``params_template`` gives the structure, shapes (and shardings). With
  ``cache_dir``, the params are also kept there as an ``.npz`` named by their checksum,
  so later loads of the same checkpoint skip orbax.
  """
  directory, step = checkpoints_of(source)
  if not directory.is_dir():
    raise FileNotFoundError(f"no checkpoint found under {source}: train first or pass "
                            "another workdir")
  with Checkpoints(directory) as ckpts:
    steps = [step] if step is not None else ckpts.steps()
    if not steps:
      raise FileNotFoundError(f"no checkpoint found under {directory}: train first or pass "
                              "another workdir")
    sums = ckpts.digests(steps[-1]) if cache_dir is not None else None
    cache = path(cache_dir) / f"{sums['params']}.npz" if sums else None
    if cache is not None and cache.exists():
      with cache.open("rb") as f, np.load(f) as npz:
        return unflatten_params({k: npz[k] for k in npz.files}), steps[-1]
    template = Checkpoint(0, params_template)
    if step is None:
      restored = ckpts.restore(template, params_only=True)
    else:
      try:
        restored = ckpts.read(step, template, params_only=True)
      except CorruptCheckpointError as e:
        raise WorkdirError(f"checkpoint {directory / str(step)} is {e}") from e
  if cache is not None and restored.step == steps[-1]:
    cache.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    np.savez(buffer, **flatten_params(restored.params))
    _replace(cache, buffer.getvalue())
  return restored.params, restored.step


def load(workdir: PathLike, cache_dir: PathLike | None = None
         ) -> tuple[ml_collections.ConfigDict, Any, int]:
  """(config, params, step) of a run's newest usable checkpoint."""
  config = load_config(workdir)
  params, step = load_params(workdir, abstract_params(config), cache_dir)
  return config, params, step


def save(workdir: PathLike, config: ml_collections.ConfigDict, checkpoint: Checkpoint
         ) -> epath.Path:
  """Writes ``checkpoint`` and ``config.json`` as a new run (or a new step of one).

  Returns the step's folder; ``FileExistsError`` when that step exists already.
  """
  workdir = path(workdir)
  with lock(workdir), Checkpoints(workdir / CHECKPOINTS, writer=True) as ckpts:
    resolve_config(workdir, config)
    if not ckpts.save(checkpoint, config):
      raise FileExistsError(f"{ckpts.directory / str(checkpoint.step)} already exists")
    write_config(workdir, absolute_data_paths(config))
  return workdir / CHECKPOINTS / str(checkpoint.step)


# ----------------------------------------------------------------------------- metrics


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
        _replace(file, kept.encode())
    tensorboard = self._workdir / "tensorboard"
    for split in tensorboard.iterdir() if tensorboard.exists() else ():
      for events in event_files(split):
        records = list(_event_records(events))
        kept = [r for r in records if event_pb2.Event.FromString(r).step <= resume_step]
        if len(kept) != len(records):
          _replace(events, b"".join(map(tfrecord.frame, kept)))

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


def _replace(file: epath.Path, data: bytes) -> None:
  """Atomically replaces ``file``'s contents (a temporary file, then a rename)."""
  tmp = file.parent / f"{file.name}.tmp-{os.getpid()}"
  tmp.write_bytes(data)
  tmp.replace(file)


def update_data_report(workdir: PathLike, report: dict[str, Any]) -> None:
  """Sets the splits in ``report`` in the run's data report (others are kept)."""
  file = path(workdir) / DATA_REPORT_FILE
  merged = {**(json.loads(file.read_text()) if file.exists() else {}), **report}
  _replace(file, (json.dumps(merged, indent=2) + "\n").encode())
