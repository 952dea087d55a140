"""Training and evaluation loops (Flax-examples style).

One jitted train step, data-parallel over every device of every host: the global batch
is sharded along a 1-D ``jax.sharding.Mesh`` axis ``'data'``, parameters and optimiser
state are replicated, XLA inserts the gradient all-reduce. Per-step randomness is
``fold_in(state.rng, step)`` and the batch order a function of ``(seed, step)``, so a run
resumed from a checkpoint continues exactly as if it had never stopped.

Workdir layout: ``config.json``, ``checkpoints/<step>/`` (orbax: ``params``, ``train``
(step, optimiser state, rng) and ``config``), ``metrics.jsonl`` and TensorBoard event
files under ``tensorboard/{train,eval}``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import pathlib
import socket
import struct
import time
from typing import Any, Callable, Iterable

from absl import logging
import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp
import tqdm

from flax_musicvae import input_pipeline
from flax_musicvae import optim
from flax_musicvae.checkpoints import crc32c

Batch = dict[str, jax.Array]
Metrics = dict[str, float]
DATA_AXIS = "data"


class TrainState(flax.struct.PyTreeNode):
  step: jax.Array
  params: Any
  opt_state: Any
  rng: jax.Array  # raw uint32 key; step keys are fold_in(rng, step)


# ----------------------------------------------------------------------------- metrics output


def _event_record(data: bytes) -> bytes:
  length = struct.pack("<Q", len(data))
  crc = lambda b: struct.pack("<I", crc32c.mask(crc32c.value(b)))
  return length + crc(length) + data + crc(data)


def _varint(n: int) -> bytes:
  out = bytearray()
  while True:
    byte, n = n & 0x7F, n >> 7
    out.append(byte | (0x80 if n else 0))
    if not n:
      return bytes(out)


def _event_proto(wall_time: float, step: int, *, file_version: str = "",
                 scalars: dict[str, float] | None = None) -> bytes:
  """A serialized ``tensorboard.Event`` (wall_time=1, step=2, file_version=3, summary=5)."""
  out = b"\x09" + struct.pack("<d", wall_time) + b"\x10" + _varint(step)
  if file_version:
    out += b"\x1a" + _varint(len(file_version)) + file_version.encode()
  if scalars:
    summary = b""
    for tag, value in scalars.items():  # Summary.Value: tag=1, simple_value=2
      tag_bytes = tag.encode()
      v = b"\x0a" + _varint(len(tag_bytes)) + tag_bytes + b"\x15" + struct.pack("<f", value)
      summary += b"\x0a" + _varint(len(v)) + v
    out += b"\x2a" + _varint(len(summary)) + summary
  return out


class EventFileWriter:
  """Scalar summaries in TensorBoard's event-file format, without TensorFlow."""

  def __init__(self, logdir: str | os.PathLike):
    logdir = pathlib.Path(logdir)
    logdir.mkdir(parents=True, exist_ok=True)
    name = f"events.out.tfevents.{int(time.time())}.{socket.gethostname()}"
    self._file = open(logdir / name, "ab")
    self._write(_event_proto(time.time(), 0, file_version="brain.Event:2"))

  def _write(self, event: bytes) -> None:
    self._file.write(_event_record(event))
    self._file.flush()

  def scalars(self, step: int, scalars: dict[str, float]) -> None:
    self._write(_event_proto(time.time(), step, scalars=scalars))

  def close(self) -> None:
    self._file.close()


class MetricWriter:
  """``metrics.jsonl`` (one line per write) plus TensorBoard events per split."""

  def __init__(self, workdir: pathlib.Path, enabled: bool = True):
    self._enabled = enabled
    self._workdir = workdir
    self._events: dict[str, EventFileWriter] = {}

  def write(self, split: str, step: int, metrics: Metrics) -> None:
    if not self._enabled:
      return
    with open(self._workdir / "metrics.jsonl", "a") as f:
      f.write(json.dumps({"split": split, "step": step, **metrics}) + "\n")
    if split not in self._events:
      self._events[split] = EventFileWriter(self._workdir / "tensorboard" / split)
    self._events[split].scalars(step, metrics)

  def close(self) -> None:
    for writer in self._events.values():
      writer.close()


# ----------------------------------------------------------------------------- model + steps


def _models():
  from flax_musicvae import models  # pylint: disable=g-import-not-at-top
  from flax_musicvae import schedules  # pylint: disable=g-import-not-at-top
  from flax_musicvae.models import losses  # pylint: disable=g-import-not-at-top
  return models, schedules, losses


def create_mesh() -> jax.sharding.Mesh:
  return jax.sharding.Mesh(np.asarray(jax.devices()), (DATA_AXIS,))


def _shardings(mesh: jax.sharding.Mesh):
  P = jax.sharding.PartitionSpec
  return (jax.sharding.NamedSharding(mesh, P()),
          jax.sharding.NamedSharding(mesh, P(DATA_AXIS)))


def _cast_floats(tree, dtype):
  cast = lambda x: x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x
  return jax.tree.map(cast, tree)


def _apply(model, params, batch, rng, *, train: bool, sampling_probability, compute_dtype):
  """Forward pass on a ``compute_dtype`` copy of the float inputs (targets stay as given).

  The model computes in the dtype of the batch (``vae.compute_dtype``: its matmuls and
  LSTM gates in bfloat16 when asked), casting the float32 params where it uses them, so
  their gradients are float32 and summed in float32. sigma, the KL, the LSTM cell states
  and the per-step losses stay float32; outputs are cast to float32 for the loss reduction.
  """
  dropout_rng, sample_rng = jax.random.split(rng)
  inputs = {k: v for k, v in batch.items() if k != "outputs"}   # targets stay full precision
  outputs = model.apply({"params": params},
                        {**_cast_floats(inputs, compute_dtype), "outputs": batch["outputs"]},
                        train=train,
                        sampling_probability=sampling_probability,
                        rngs={"dropout": dropout_rng, "sample": sample_rng})
  return _cast_floats(outputs, jnp.float32)


def init_train_state(config: ml_collections.ConfigDict, model, tx: optax.GradientTransformation,
                     example_batch: dict[str, np.ndarray], mesh: jax.sharding.Mesh) -> TrainState:
  """Initial state, created directly as replicated arrays (the same on every host)."""
  replicated, _ = _shardings(mesh)
  shapes = {k: jax.ShapeDtypeStruct((1,) + v.shape[1:], v.dtype)
            for k, v in example_batch.items()}

  def init(seed):
    rng = jax.random.PRNGKey(seed)
    init_rng, params_rng, dropout_rng, sample_rng = jax.random.split(rng, 4)
    dummy = {k: jnp.zeros(s.shape, s.dtype) for k, s in shapes.items()}
    dummy["lengths"] = jnp.full_like(dummy["lengths"], dummy["inputs"].shape[1])
    params = model.init({"params": params_rng, "dropout": dropout_rng, "sample": sample_rng},
                        dummy, train=True)["params"]
    return TrainState(jnp.zeros([], jnp.int32), params, tx.init(params), init_rng)

  return jax.jit(init, out_shardings=replicated)(config.train.seed)


def make_train_step(config: ml_collections.ConfigDict, model, tx: optax.GradientTransformation,
                    mesh: jax.sharding.Mesh) -> Callable[[TrainState, Batch], tuple]:
  """``(state, batch) -> (state, metrics)``, jitted over the mesh; ``state`` is donated."""
  _, schedules, losses = _models()
  replicated, batch_sharding = _shardings(mesh)
  lr_fn = optim.learning_rate_schedule(config.train)
  dtype = jnp.dtype(config.train.compute_dtype)

  def step_fn(state: TrainState, batch: Batch):
    rng = jax.random.fold_in(state.rng, state.step)
    sp = schedules.sampling_probability(state.step, config.model, True)  # 0.0: teacher forcing

    def loss_fn(params):
      outputs = _apply(model, params, batch, rng, train=True, sampling_probability=sp,
                       compute_dtype=dtype)
      return losses.compute_loss(outputs, batch, state.step, config.model)

    (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = dict(metrics, loss=loss, global_norm=optax.tree.norm(grads),
                   learning_rate=lr_fn(state.step), sampling_probability=sp)
    return state.replace(step=state.step + 1, params=params, opt_state=opt_state), metrics

  return jax.jit(step_fn, in_shardings=(replicated, batch_sharding),
                 out_shardings=(replicated, replicated), donate_argnums=0)


def eval_passes(config: ml_collections.ConfigDict, step: int) -> tuple[dict[str, float], str]:
  """Sampling probability of each evaluation pass, and the pass Magenta's eval reports.

  ``teacher_forced`` (p=0) and ``free_running`` (p=1: the decoder feeds back its own
  samples). Magenta evaluates at the schedule's eval value (1 for any non-constant
  schedule, the rate for a constant one); that pass's metrics are also reported unprefixed.
  """
  _, schedules, _ = _models()
  magenta = float(schedules.sampling_probability(step, config.model, False))
  passes = {"teacher_forced": 0.0, "free_running": 1.0}
  for name, sp in passes.items():
    if sp == magenta:
      return passes, name
  return dict(passes, magenta=magenta), "magenta"


def make_eval_step(config: ml_collections.ConfigDict, model, mesh: jax.sharding.Mesh):
  """``(params, batch, rng, step, sampling_probability) -> metrics`` (train=False).

  ``sampling_probability`` is a static Python float (0.0: the teacher-forced graph).
  """
  _, _, losses = _models()
  replicated, batch_sharding = _shardings(mesh)
  dtype = jnp.dtype(config.train.compute_dtype)

  def eval_fn(params, batch, rng, step, sp: float):
    outputs = _apply(model, params, batch, rng, train=False, sampling_probability=sp,
                     compute_dtype=dtype)
    loss, metrics = losses.compute_loss(outputs, batch, step, config.model)
    return dict(metrics, loss=loss)

  return jax.jit(eval_fn, in_shardings=(replicated, batch_sharding, replicated, replicated),
                 out_shardings=replicated, static_argnums=4)


def evaluate_params(config: ml_collections.ConfigDict, eval_step, params, step: int,
                    batches: Iterable[Batch]) -> Metrics:
  """Mean metrics over ``batches`` for every pass of :func:`eval_passes`."""
  passes, magenta = eval_passes(config, step)
  base_rng = jax.random.PRNGKey(config.train.seed + 1)
  sums: dict[str, Any] = {}
  count = 0
  for i, batch in enumerate(batches):
    rng = jax.random.fold_in(base_rng, i)
    for name, sp in passes.items():
      for k, v in eval_step(params, batch, rng, jnp.int32(step), sp).items():
        key = f"{name}/{k}"
        sums[key] = sums[key] + v if key in sums else v
    count += 1
  out = {k: float(v) / count for k, v in jax.device_get(sums).items()}
  out.update({k.split("/", 1)[1]: v for k, v in list(out.items())
              if k.startswith(magenta + "/")})
  return out


# ----------------------------------------------------------------------------- checkpoints


def _abstract(tree):
  return jax.tree.map(ocp.utils.to_shape_dtype_struct, tree)


def _train_item(state: TrainState) -> dict[str, Any]:
  return {"step": state.step, "opt_state": state.opt_state, "rng": state.rng}


def checkpoint_manager(workdir: pathlib.Path,
                       config: ml_collections.ConfigDict) -> ocp.CheckpointManager:
  options = ocp.CheckpointManagerOptions(max_to_keep=config.train.checkpoints_to_keep,
                                         create=True)
  return ocp.CheckpointManager(workdir / "checkpoints", options=options)


def save_checkpoint(manager: ocp.CheckpointManager, state: TrainState,
                    config: ml_collections.ConfigDict) -> bool:
  """Saves ``state`` at its step (asynchronously); False when that step already exists."""
  step = int(jax.device_get(state.step))
  if step in manager.all_steps():
    return False
  return manager.save(step, args=ocp.args.Composite(
      params=ocp.args.StandardSave(state.params),
      train=ocp.args.StandardSave(_train_item(state)),
      config=ocp.args.JsonSave(json.loads(config.to_json_best_effort()))), force=True)


def restore_checkpoint(manager: ocp.CheckpointManager, state: TrainState,
                       step: int | None = None) -> TrainState:
  """``state`` with everything replaced by checkpoint ``step`` (default: the latest)."""
  step = manager.latest_step() if step is None else step
  restored = manager.restore(step, args=ocp.args.Composite(
      params=ocp.args.StandardRestore(_abstract(state.params)),
      train=ocp.args.StandardRestore(_abstract(_train_item(state)))))
  return state.replace(params=restored.params, **restored.train)


def load_params(path: str | os.PathLike, params: Any) -> Any:
  """Parameters (only) from another run: its workdir, checkpoints folder or a step folder.

  ``params`` gives the expected structure, shapes and shardings.
  """
  path = input_pipeline.resolve_path(os.fspath(path))
  if (path / "params").is_dir():
    with ocp.StandardCheckpointer() as ckptr:
      return ckptr.restore(path / "params", _abstract(params))
  if (path / "checkpoints").is_dir():
    path = path / "checkpoints"
  with ocp.CheckpointManager(path) as manager:
    step = manager.latest_step()
    if step is None:
      raise FileNotFoundError(f"no checkpoint found under {path}")
    return manager.restore(step, args=ocp.args.Composite(
        params=ocp.args.StandardRestore(_abstract(params)))).params


# ----------------------------------------------------------------------------- loops


def _mean_metrics(history: list[dict[str, jax.Array]]) -> Metrics:
  history = jax.device_get(history)
  return {k: float(np.mean([h[k] for h in history])) for k in history[0]}


def _load_data(config, train_data, eval_data):
  if train_data is None:
    train_data = input_pipeline.load_split(config, "train")
  if eval_data is None:
    eval_data = input_pipeline.load_split(config, "validation")
  batch_size = config.train.batch_size
  input_pipeline.check_enough_examples(train_data, batch_size, "the training split")
  input_pipeline.check_enough_examples(eval_data, batch_size, "the evaluation split")
  return train_data, eval_data


def _check_batch_size(config: ml_collections.ConfigDict) -> None:
  if config.train.batch_size % jax.device_count():
    raise ValueError(f"train.batch_size={config.train.batch_size} must be divisible by the "
                     f"{jax.device_count()} devices")


@dataclasses.dataclass
class _Setup:
  """Everything a loop needs, built once from the config."""
  model: Any
  tx: optax.GradientTransformation
  mesh: jax.sharding.Mesh
  state: TrainState
  manager: ocp.CheckpointManager


def _setup(config, workdir: pathlib.Path, example_batch) -> _Setup:
  models, _, _ = _models()
  _check_batch_size(config)
  mesh = create_mesh()
  model = models.build_model(config)
  tx = optim.create_optimizer(config.train)
  state = init_train_state(config, model, tx, example_batch, mesh)
  return _Setup(model, tx, mesh, state, checkpoint_manager(workdir, config))


def _evaluate(config, setup: _Setup, eval_step, state: TrainState, eval_data) -> Metrics:
  _, batch_sharding = _shardings(setup.mesh)
  batches = input_pipeline.eval_batches(eval_data, config.train.batch_size,
                                        config.train.eval_num_batches,
                                        jax.process_index(), jax.process_count())
  with input_pipeline.Prefetcher(
      batches, lambda b: input_pipeline.shard_batch(b, batch_sharding)) as prefetched:
    return evaluate_params(config, eval_step, state.params, int(jax.device_get(state.step)),
                           prefetched)


def _write_config(config: ml_collections.ConfigDict, workdir: pathlib.Path) -> None:
  if jax.process_index() == 0:
    (workdir / "config.json").write_text(config.to_json_best_effort(indent=2) + "\n")


def _print_summary(title: str, rows: dict[str, Any]) -> None:
  if jax.process_index() != 0:
    return
  width = max(map(len, rows))
  lines = [title] + [f"  {k:<{width}}  {v:.6g}" if isinstance(v, float) else
                     f"  {k:<{width}}  {v}" for k, v in rows.items()]
  print("\n".join(lines), flush=True)


def _restore_or_warm_start(config, setup: _Setup) -> TrainState:
  state = setup.state
  if setup.manager.latest_step() is not None:
    logging.info("Resuming from checkpoint step %d", setup.manager.latest_step())
    return restore_checkpoint(setup.manager, state)
  if config.train.warm_start_from:
    logging.info("Warm start: parameters from %s", config.train.warm_start_from)
    return state.replace(params=load_params(config.train.warm_start_from, state.params))
  return state


class _Timer:
  """Training wall time between logs, excluding evaluation and checkpointing."""

  def __init__(self):
    self.total = 0.0
    self._interval = 0.0
    self._start = time.perf_counter()

  @contextlib.contextmanager
  def paused(self):
    self._interval += time.perf_counter() - self._start
    try:
      yield
    finally:
      self._start = time.perf_counter()

  def lap(self) -> float:
    """Seconds of training since the previous lap."""
    seconds = self._interval + time.perf_counter() - self._start
    self.total += seconds
    self._interval, self._start = 0.0, time.perf_counter()
    return seconds


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str | os.PathLike, *,
                       train_data: dict[str, np.ndarray] | None = None,
                       eval_data: dict[str, np.ndarray] | None = None) -> dict[str, Metrics]:
  """Trains to ``config.train.num_train_steps`` (resuming from ``workdir`` if possible).

  ``train_data``/``eval_data`` override the splits named by ``config.data``. Saves a
  checkpoint every ``checkpoint_every_steps``, at the end, and on the way out after an
  interrupt or error. Returns the last logged train metrics and evaluation metrics.
  """
  workdir = pathlib.Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  _write_config(config, workdir)
  train_data, eval_data = _load_data(config, train_data, eval_data)
  tc = config.train
  setup = _setup(config, workdir, train_data)
  state = _restore_or_warm_start(config, setup)
  train_step = make_train_step(config, setup.model, setup.tx, setup.mesh)
  eval_step = make_eval_step(config, setup.model, setup.mesh)
  _, batch_sharding = _shardings(setup.mesh)
  writer = MetricWriter(workdir, enabled=jax.process_index() == 0)

  start = int(jax.device_get(state.step))
  batches = input_pipeline.train_batches(train_data, tc.batch_size, tc.seed, start,
                                         jax.process_index(), jax.process_count(),
                                         augment=input_pipeline.build_augment(config.data))
  prefetched = input_pipeline.Prefetcher(
      batches, lambda b: input_pipeline.shard_batch(b, batch_sharding))
  history: list[dict[str, jax.Array]] = []
  train_metrics: Metrics = {}
  eval_metrics: Metrics = {}
  timer = _Timer()
  bar = tqdm.tqdm(total=tc.num_train_steps, initial=start, unit="step", dynamic_ncols=True,
                  disable=jax.process_index() != 0)
  try:
    for step in range(start + 1, tc.num_train_steps + 1):
      state, metrics = train_step(state, next(prefetched))
      history.append(metrics)
      bar.update(1)
      last = step == tc.num_train_steps
      if step % tc.log_every_steps == 0 or last:
        train_metrics = _mean_metrics(history)
        seconds = timer.lap()
        train_metrics["steps_per_second"] = len(history) / seconds
        train_metrics["examples_per_second"] = len(history) * tc.batch_size / seconds
        history = []
        writer.write("train", step, train_metrics)
        bar.set_postfix(loss=f"{train_metrics['loss']:.2f}",
                        ex_per_s=f"{train_metrics['examples_per_second']:.0f}")
      if step % tc.eval_every_steps == 0 or last:
        with timer.paused():
          eval_metrics = _evaluate(config, setup, eval_step, state, eval_data)
        writer.write("eval", step, eval_metrics)
        bar.write(f"step {step}: eval loss {eval_metrics['loss']:.3f}, "
                  f"accuracy {eval_metrics['accuracy']:.4f} (teacher-forced "
                  f"{eval_metrics['teacher_forced/accuracy']:.4f}, free-running "
                  f"{eval_metrics['free_running/accuracy']:.4f})")
      if step % tc.checkpoint_every_steps == 0 or last:
        with timer.paused():
          save_checkpoint(setup.manager, state, config)
  except BaseException:
    _save_on_exit(setup.manager, state, config)
    raise
  finally:
    bar.close()
    prefetched.close()
    setup.manager.wait_until_finished()
    setup.manager.close()
    writer.close()
  _print_summary(f"Training finished: {workdir}", {
      "steps": f"{start} -> {tc.num_train_steps}",
      "train seconds": timer.total,
      **{f"train {k}": v for k, v in train_metrics.items()},
      **{f"eval {k}": v for k, v in eval_metrics.items()},
      "checkpoints": str(workdir / "checkpoints"),
  })
  return {"train": train_metrics, "eval": eval_metrics}


def _save_on_exit(manager: ocp.CheckpointManager, state: TrainState,
                  config: ml_collections.ConfigDict) -> None:
  """Best-effort checkpoint after an interrupt/crash (not if the state was lost)."""
  if any(x.is_deleted() for x in jax.tree.leaves(state)):
    logging.warning("Interrupted inside a train step: no checkpoint saved on exit")
    return
  try:
    if save_checkpoint(manager, state, config):
      logging.warning("Interrupted: saved checkpoint at step %d", int(state.step))
  except Exception:  # pylint: disable=broad-except
    logging.exception("Could not save a checkpoint on exit")


def evaluate(config: ml_collections.ConfigDict, workdir: str | os.PathLike, *,
             eval_data: dict[str, np.ndarray] | None = None) -> Metrics:
  """Evaluates the latest checkpoint of ``workdir`` on the validation split."""
  workdir = pathlib.Path(workdir)
  if eval_data is None:
    eval_data = input_pipeline.load_split(config, "validation")
  input_pipeline.check_enough_examples(eval_data, config.train.batch_size,
                                       "the evaluation split")
  setup = _setup(config, workdir, eval_data)
  try:
    if setup.manager.latest_step() is None:
      raise FileNotFoundError(f"no checkpoint under {workdir / 'checkpoints'}")
    state = restore_checkpoint(setup.manager, setup.state)
  finally:
    setup.manager.close()
  metrics = _evaluate(config, setup, make_eval_step(config, setup.model, setup.mesh), state,
                      eval_data)
  step = int(jax.device_get(state.step))
  writer = MetricWriter(workdir, enabled=jax.process_index() == 0)
  writer.write("eval", step, metrics)
  writer.close()
  _print_summary(f"Evaluation of {workdir} at step {step}", metrics)
  return metrics
