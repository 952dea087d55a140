"""A run's orbax checkpoints: saved with checksums, verified on restore, falling back to
an older one when the newest is unusable; params loaded from a run for inference."""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import io
import os
import time
from typing import Any

from absl import logging
from etils import epath
from flax import traverse_util
import jax
import ml_collections
import numpy as np

from flax_musicvae import models
from flax_musicvae.workdir.layout import CHECKPOINTS
from flax_musicvae.workdir.layout import PathLike
from flax_musicvae.workdir.layout import REJECTED
from flax_musicvae.workdir.layout import SaveError
from flax_musicvae.workdir.layout import WorkdirError
from flax_musicvae.workdir.layout import is_local
from flax_musicvae.workdir.layout import lock
from flax_musicvae.workdir.layout import path
from flax_musicvae.workdir.layout import replace_file
from flax_musicvae.workdir.run_config import absolute_data_paths
from flax_musicvae.workdir.run_config import load_config
from flax_musicvae.workdir.run_config import plain
from flax_musicvae.workdir.run_config import resolve_config
from flax_musicvae.workdir.run_config import write_config


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
    args["config"] = ocp.args.JsonSave(plain(config))
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
    replace_file(cache, buffer.getvalue())
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
