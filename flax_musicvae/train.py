"""Training and evaluation loops (Flax-examples style): ``train_and_evaluate`` and
``evaluate`` drive the jitted steps of ``flax_musicvae.steps``.

The batch order is a function of ``(seed, step)`` and per-step randomness
``fold_in(state.rng, step)``, so a run resumed from a checkpoint continues exactly as if
it had never stopped.

The run directory (config, checkpoints, metrics, lock) is ``flax_musicvae.workdir``'s.
At most ``MAX_STEPS_IN_FLIGHT`` steps run ahead of the host, so a SIGTERM/SIGINT is
answered within a couple of steps plus one synchronous save.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import os
import sys
import time
from typing import Any, Callable

from absl import logging
from etils import epath
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import tqdm

from flax_musicvae import cli
from flax_musicvae import config_lib
from flax_musicvae import eval_samples
from flax_musicvae import input_pipeline
from flax_musicvae import models
from flax_musicvae import optim
from flax_musicvae import steps
from flax_musicvae import workdir as workdir_lib


def evaluate_arrays(config: ml_collections.ConfigDict, params, arrays: dict[str, np.ndarray],
                    step: int) -> steps.Metrics:
  """Mean metrics of ``params`` over every full batch of ``arrays`` (e.g. a test split)."""
  mesh = steps.create_mesh()
  eval_step = steps.make_eval_step(config, models.build_model(config), mesh)
  return _evaluate(config, mesh, eval_step, params, step, arrays, num_batches=0)


# ----------------------------------------------------------------------------- run control

#: Train steps dispatched ahead of the host: a signal waits for at most this many.
MAX_STEPS_IN_FLIGHT = 2


class ConfigError(ValueError):
  """A config that cannot train; the message names the setting."""


class NonFiniteError(RuntimeError):
  """Training stopped after too many consecutive non-finite steps."""


Interrupted = cli.Interrupted


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Raises ``ConfigError`` for settings no run can use (before any data is read)."""
  base = config_lib.base_config()
  unknown = [f"{section}.{k}" for section in ("model", "data", "train")
             for k in config.get(section, {}) if k not in base[section]]
  if unknown:
    raise ConfigError(f"unknown config keys: {', '.join(unknown)}")
  tc = config.train
  for key in ("batch_size", "num_train_steps", "log_every_steps", "eval_every_steps",
              "checkpoint_every_steps", "checkpoints_to_keep", "max_nonfinite_steps"):
    if not isinstance(tc[key], int) or tc[key] < 1:
      raise ConfigError(f"train.{key} must be a positive integer, got {tc[key]!r}")
  if tc.batch_size % jax.device_count():
    raise ConfigError(f"train.batch_size={tc.batch_size} must be divisible by the "
                      f"{jax.device_count()} devices")


# ----------------------------------------------------------------------------- loops


_SPLIT_NAMES = {"train": "the training split", "validation": "the evaluation split"}


def _load_data(config, run: epath.Path, **splits: dict[str, np.ndarray] | None
               ) -> list[dict[str, np.ndarray]]:
  """The named splits (``train=``, ``validation=``: given arrays, or None to load them).

  Loaded splits' skipped files go to the run's data report and one line each on
  stdout. Data problems are ``ConfigError``.
  """
  report = {}
  try:
    for split, given in splits.items():
      if given is None:
        splits[split], report[split] = input_pipeline.load_split_with_stats(config, split)
      input_pipeline.check_enough_examples(splits[split], config.train.batch_size,
                                           _SPLIT_NAMES[split])
  except (ValueError, FileNotFoundError, NotADirectoryError) as e:
    raise ConfigError(f"data: {e}") from e
  if report and jax.process_index() == 0:
    workdir_lib.update_data_report(run, report)
    for split, stats in report.items():
      print(input_pipeline.describe_stats(split, stats), flush=True)
  return list(splits.values())


@dataclasses.dataclass
class _Setup:
  """Everything a loop needs, built once from the config."""
  model: Any
  tx: optax.GradientTransformation
  mesh: jax.sharding.Mesh
  state: steps.TrainState


def _setup(config, example_batch) -> _Setup:
  mesh = steps.create_mesh()
  model = models.build_model(config)
  tx = optim.create_optimizer(config.train)
  state = steps.init_train_state(config, model, tx, example_batch, mesh)
  return _Setup(model, tx, mesh, state)


def _evaluate(config, mesh: jax.sharding.Mesh, eval_step, params, step: int, eval_data,
              num_batches: int, stop: Callable[[], bool] = lambda: False) -> steps.Metrics | None:
  """:func:`steps.evaluate_params` over ``num_batches`` full batches of ``eval_data`` (0: all),
  prefetched onto the mesh."""
  _, batch_sharding = steps.shardings(mesh)
  batches = input_pipeline.eval_batches(eval_data, config.train.batch_size, num_batches,
                                        jax.process_index(), jax.process_count())
  with input_pipeline.Prefetcher(
      batches, lambda b: input_pipeline.shard_batch(b, batch_sharding)) as prefetched:
    return steps.evaluate_params(config, eval_step, params, step, prefetched, stop)


def _print_summary(title: str, rows: dict[str, Any]) -> None:
  if jax.process_index() != 0:
    return
  width = max(map(len, rows))
  lines = [title] + [f"  {k:<{width}}  {v:.6g}" if isinstance(v, float) else
                     f"  {k:<{width}}  {v}" for k, v in rows.items()]
  print("\n".join(lines), flush=True)


def _template(state: steps.TrainState) -> workdir_lib.Checkpoint:
  return workdir_lib.Checkpoint(0, state.params, state.opt_state, state.rng)


def _restore_or_warm_start(config, setup: _Setup, ckpts: workdir_lib.Checkpoints
                           ) -> steps.TrainState:
  """The newest usable checkpoint (a params-only one gets a fresh optimiser), a warm
  start, or the initial state."""
  state = setup.state
  restored = ckpts.restore(_template(state))
  if restored is not None:
    logging.info("Resuming from checkpoint step %d", restored.step)
    if restored.opt_state is None:
      return state.replace(step=jnp.int32(restored.step), params=restored.params,
                           opt_state=setup.tx.init(restored.params))
    return state.replace(step=jnp.int32(restored.step), params=restored.params,
                         opt_state=restored.opt_state, rng=restored.rng)
  if config.train.warm_start_from:
    source = config.train.warm_start_from
    logging.info("Warm start: parameters from %s", source)
    params, _ = workdir_lib.load_params(os.path.abspath(os.path.expanduser(source))
                                        if workdir_lib.is_local(source) else source,
                                        state.params)
    return state.replace(params=params)
  return state


def _save(ckpts: workdir_lib.Checkpoints, state: steps.TrainState, config, log) -> None:
  """Saves ``state`` (waiting for it) and logs one line once it is on disk."""
  start = time.perf_counter()
  step = int(jax.device_get(state.step))
  if ckpts.save(workdir_lib.Checkpoint(step, state.params, state.opt_state, state.rng),
                config):
    log(f"step {step}: saved checkpoint ({time.perf_counter() - start:.1f} s)")


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


class _Pace:
  """Seconds per train step, measured once after warm-up (compilation, first steps).

  :meth:`done` is told each step whose metrics reached the host; it returns the step
  time once ``min_steps`` steps over ``min_seconds`` (or ``max_steps`` steps) were timed,
  then None. :meth:`restart` drops a span that an evaluation or a save interrupted.
  """

  def __init__(self, start_step: int, warmup_steps: int = 2, min_steps: int = 5,
               min_seconds: float = 2.0, max_steps: int = 50):
    self._first = start_step + warmup_steps
    self._min_steps, self._min_seconds, self._max_steps = min_steps, min_seconds, max_steps
    self._mark: tuple[int, float] | None = None
    self.measured = False

  def done(self, step: int) -> float | None:
    if self.measured or step < self._first:
      return None
    now = time.perf_counter()
    if self._mark is None:
      self._mark = (step, now)
      return None
    timed, seconds = step - self._mark[0], now - self._mark[1]
    if (timed >= self._min_steps and seconds >= self._min_seconds) or timed >= self._max_steps:
      self.measured = True
      return seconds / timed
    return None

  def restart(self) -> None:
    self._mark = None


def _duration(seconds: float) -> str:
  if seconds < 120:
    return f"{seconds:.0f} s"
  if seconds < 7200:
    return f"{seconds / 60:.0f} min"
  return f"{seconds / 3600:.1f} h"


#: A run whose ETA exceeds this gets the hint for a short run.
LONG_RUN_SECONDS = 3600.0
#: The short run the hint aims at: batch size, and minutes of training on this machine.
SHORT_RUN_BATCH, SHORT_RUN_MINUTES = 64, 15


def run_header(config: ml_collections.ConfigDict, params, start: int) -> str:
  """The first line of a run: model, parameters, devices, batch and steps."""
  count = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(params))
  devices = jax.devices()
  kind = devices[0].device_kind if devices[0].platform != "cpu" else "cpu"
  what = f"{len(devices)} {kind} device{'s' if len(devices) > 1 else ''}"
  if jax.process_count() > 1:
    what += f" on {jax.process_count()} hosts"
  tc = config.train
  return (f"{config.get('name') or 'model'}: {count:,} parameters, {what}, batch "
          f"{tc.batch_size}, steps {start:,} -> {tc.num_train_steps:,}")


def pace_line(config: ml_collections.ConfigDict, step_seconds: float, step: int) -> str:
  """Measured step time and the ETA of the run; for a long run, how to make a short one.

  The short run keeps the model and cuts the batch to ``SHORT_RUN_BATCH`` (step time
  taken as proportional to the batch) and the steps to ``SHORT_RUN_MINUTES`` of training.
  """
  tc = config.train
  eta = step_seconds * max(tc.num_train_steps - step, 0)
  line = (f"step time {step_seconds:.3g} s after warm-up: {_duration(eta)} for the "
          f"{tc.num_train_steps - step:,} steps left")
  if eta <= LONG_RUN_SECONDS:
    return line
  batch = min(tc.batch_size, SHORT_RUN_BATCH)
  short_step = step_seconds * batch / tc.batch_size
  short_steps = max(100, int(SHORT_RUN_MINUTES * 60 / short_step) // 100 * 100)
  evals = max(50, short_steps // 4 // 50 * 50)
  return (f"{line}. A short run (about {_duration(short_steps * short_step)} here): "
          f"--config.train.batch_size={batch} --config.train.num_train_steps={short_steps} "
          f"--config.train.eval_every_steps={evals} (README: first runs)")


def train_and_evaluate(config: ml_collections.ConfigDict | None, workdir: str | os.PathLike,
                       *, train_data: dict[str, np.ndarray] | None = None,
                       eval_data: dict[str, np.ndarray] | None = None) -> dict[str, steps.Metrics]:
  """Trains to ``train.num_train_steps``, resuming from ``workdir``'s newest usable checkpoint.

  ``config`` None: the run's ``config.json``; otherwise it must match that in model and
  data (:func:`workdir.resolve_config`). ``train_data``/``eval_data`` override the
  splits named by ``config.data``. Saves every ``checkpoint_every_steps`` and at the end.
  SIGTERM/SIGINT stop after the current step, save it and raise ``Interrupted``; after
  ``train.max_nonfinite_steps`` consecutive non-finite steps (each skipped) it raises
  ``NonFiniteError``. Returns the last logged train and evaluation metrics.
  """
  with cli.STOP.installed() as stop, workdir_lib.lock(workdir):
    config = workdir_lib.resolve_config(workdir, config)
    validate_config(config)
    run = workdir_lib.path(workdir)
    run.mkdir(parents=True, exist_ok=True)
    stop.check()
    train_data, eval_data = _load_data(config, run, train=train_data, validation=eval_data)
    stop.check()
    setup = _setup(config, train_data)
    stop.check()
    with workdir_lib.Checkpoints(run / workdir_lib.CHECKPOINTS, writer=True,
                                 max_to_keep=config.train.checkpoints_to_keep) as ckpts:
      state = _restore_or_warm_start(config, setup, ckpts)
      workdir_lib.write_config(run, config)
      return _train_loop(config, run, setup, ckpts, state, train_data, eval_data, stop)


def _train_loop(config, run: epath.Path, setup: _Setup, ckpts: workdir_lib.Checkpoints,
                state: steps.TrainState, train_data, eval_data, stop: cli.StopSignals
                ) -> dict[str, steps.Metrics]:
  tc = config.train
  train_step = steps.make_train_step(config, setup.model, setup.tx, setup.mesh)
  eval_step = steps.make_eval_step(config, setup.model, setup.mesh)
  _, batch_sharding = steps.shardings(setup.mesh)
  start = int(jax.device_get(state.step))
  writer = workdir_lib.MetricWriter(run, enabled=jax.process_index() == 0, resume_step=start)
  batches = input_pipeline.train_batches(train_data, tc.batch_size, tc.seed, start,
                                         jax.process_index(), jax.process_count(),
                                         augment=input_pipeline.build_augment(config.data))
  prefetched = input_pipeline.Prefetcher(
      batches, lambda b: input_pipeline.shard_batch(b, batch_sharding))
  in_flight: collections.deque = collections.deque()
  history: list[steps.Metrics] = []
  train_metrics: steps.Metrics = {}
  eval_metrics: steps.Metrics = {}
  nonfinite_run = 0
  postfix: dict[str, str] = {}
  timer = _Timer()
  bar = tqdm.tqdm(total=tc.num_train_steps, initial=start, unit="step", dynamic_ncols=True,
                  disable=jax.process_index() != 0 or not sys.stderr.isatty())
  log = bar.write if jax.process_index() == 0 else lambda _: None
  log(run_header(config, state.params, start))
  pace = _Pace(start)
  samples = _eval_samples(config, run, eval_data, log)

  def complete(keep: int) -> None:
    """Waits for all but ``keep`` in-flight steps, collecting their metrics."""
    nonlocal nonfinite_run
    while len(in_flight) > keep:
      step, metrics = in_flight.popleft()
      metrics = {k: float(v) for k, v in jax.device_get(metrics).items()}
      history.append(metrics)
      nonfinite_run = nonfinite_run + 1 if metrics["skipped"] else 0
      step_seconds = pace.done(step)
      if step_seconds is not None:
        log(pace_line(config, step_seconds, step))
      if nonfinite_run >= tc.max_nonfinite_steps:
        raise NonFiniteError(
            f"loss or gradient norm not finite for {nonfinite_run} consecutive steps (up to "
            f"step {step}, loss {metrics['loss']}, gradient norm {metrics['global_norm']}); "
            "those updates were skipped and nothing was saved after them. Lower "
            "train.learning_rate or check the data; the last checkpoint is intact")

  try:
    step = start
    while step < tc.num_train_steps and not stop.signum:
      state, metrics = train_step(state, next(prefetched))
      step += 1
      in_flight.append((step, metrics))
      bar.update(1)
      last = step == tc.num_train_steps
      due = {name: step % every == 0 or last for name, every in (
          ("log", tc.log_every_steps), ("eval", tc.eval_every_steps),
          ("checkpoint", tc.checkpoint_every_steps))}
      complete(0 if any(due.values()) else MAX_STEPS_IN_FLIGHT - 1)
      if due["log"]:
        train_metrics = {k: float(np.mean([h[k] for h in history])) for k in history[0]}
        seconds = timer.lap()
        train_metrics["steps_per_second"] = len(history) / seconds
        train_metrics["examples_per_second"] = len(history) * tc.batch_size / seconds
        history = []
        writer.write("train", step, train_metrics)
        postfix["loss"] = f"{train_metrics['loss']:.2f}"
        postfix["ex/s"] = f"{train_metrics['examples_per_second']:.0f}"
        bar.set_postfix(postfix)
      if due["eval"]:
        with timer.paused():
          metrics = _evaluate(config, setup.mesh, eval_step, state.params, step, eval_data,
                              tc.eval_num_batches, lambda: stop.signum)
        if metrics is not None:
          eval_metrics = metrics
          writer.write("eval", step, eval_metrics)
          passes = ", ".join(f"{p.replace('_', '-')} {eval_metrics[p + '/accuracy']:.4f}"
                             for p in steps.eval_passes(config, step)[0])
          written = ""
          if samples is not None:
            try:
              with timer.paused():
                folder = samples.write(step, state.params)
              writer.images("eval", step, {png.stem: png.read_bytes()
                                           for png in sorted(folder.glob("*.png"))})
              written = f"; samples: {folder}"
            except Exception as e:  # pylint: disable=broad-except  # never ends a run
              samples = None
              written = (f"; samples not written ({type(e).__name__}: {e}), "
                         "training goes on without them")
          log(f"step {step}: eval loss {eval_metrics['loss']:.3f}, "
              f"accuracy {eval_metrics['accuracy']:.4f} ({passes}){written}")
          postfix["eval_loss"] = f"{eval_metrics['loss']:.2f}"
          postfix["eval_acc"] = f"{eval_metrics['accuracy']:.3f}"
          bar.set_postfix(postfix)
        pace.restart()
      if due["checkpoint"]:
        with timer.paused():
          _save(ckpts, state, config, log)
        pace.restart()
    complete(0)
    if stop.signum:
      _save(ckpts, state, config, log)
      raise Interrupted(stop.signum)
  except (NonFiniteError, workdir_lib.SaveError, Interrupted):
    raise
  except BaseException:
    _save_on_exit(ckpts, state, config, log)
    raise
  finally:
    bar.close()
    prefetched.close()
    writer.close()
  _print_summary(f"Training finished: {run}", {
      "steps": f"{start} -> {tc.num_train_steps}",
      "train seconds": timer.total,
      **{f"train {k}": v for k, v in train_metrics.items()},
      **{f"eval {k}": v for k, v in eval_metrics.items()},
      "checkpoints": str(ckpts.directory),
  })
  return {"train": train_metrics, "eval": eval_metrics}


def _eval_samples(config, run: epath.Path, eval_data, log):
  """The run's :class:`eval_samples.EvalSamples` (process 0), or None with a line why not."""
  if jax.process_index() != 0:
    return None
  reason = eval_samples.unavailable_reason(config, run)
  if reason is not None:
    if config.train.eval_samples:
      log(f"no samples at evaluations: {reason}")
    return None
  log(f"samples and reconstructions at each evaluation: {run / eval_samples.SAMPLES}")
  return eval_samples.EvalSamples(config, run, eval_data)


def _save_on_exit(ckpts: workdir_lib.Checkpoints, state: steps.TrainState, config, log) -> None:
  """Best-effort checkpoint after an unexpected error (not if the state was lost)."""
  if any(x.is_deleted() for x in jax.tree.leaves(state)):
    logging.warning("Stopped inside a train step: no checkpoint saved on exit")
    return
  try:
    _save(ckpts, state, config, log)
  except Exception:  # pylint: disable=broad-except
    logging.exception("Could not save a checkpoint on exit")


def evaluate(config: ml_collections.ConfigDict | None, workdir: str | os.PathLike, *,
             eval_data: dict[str, np.ndarray] | None = None) -> steps.Metrics:
  """Evaluates the newest usable checkpoint of ``workdir`` on the validation split."""
  config = workdir_lib.resolve_config(workdir, config)
  validate_config(config)
  run = workdir_lib.path(workdir)
  with cli.STOP.installed() as stop:
    with workdir_lib.Checkpoints(run / workdir_lib.CHECKPOINTS) as ckpts:
      if not ckpts.steps():
        raise workdir_lib.WorkdirError(f"no checkpoint under {ckpts.directory}: train first")
      (eval_data,) = _load_data(config, run, validation=eval_data)
      setup = _setup(config, eval_data)
      restored = ckpts.restore(_template(setup.state), params_only=True)
    metrics = _evaluate(config, setup.mesh, steps.make_eval_step(config, setup.model, setup.mesh),
                        restored.params, restored.step, eval_data,
                        config.train.eval_num_batches, lambda: stop.signum)
    stop.check()
  writer = workdir_lib.MetricWriter(run, enabled=jax.process_index() == 0)
  writer.write("eval", restored.step, metrics)
  writer.close()
  _print_summary(f"Evaluation of {run} at step {restored.step}", metrics)
  return metrics
