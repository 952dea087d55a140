"""The jitted steps (Flax-examples style): the train state, the data-parallel mesh, the
train step, the eval step and the evaluation of parameters over batches.

One train step, data-parallel over every device of every host: the global batch is
sharded along a 1-D ``jax.sharding.Mesh`` axis ``'data'``, parameters and optimiser state
are replicated, XLA inserts the gradient all-reduce. Per-step randomness is
``fold_in(state.rng, step)``. The loops that drive these steps are ``flax_musicvae.train``'s.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from flax_musicvae import optim
from flax_musicvae import schedules
from flax_musicvae.models import losses

Batch = dict[str, jax.Array]
Metrics = dict[str, float]
DATA_AXIS = "data"


class TrainState(flax.struct.PyTreeNode):
  step: jax.Array
  params: Any
  opt_state: Any
  rng: jax.Array  # raw uint32 key; step keys are fold_in(rng, step)


def create_mesh() -> jax.sharding.Mesh:
  """A 1-D mesh over every device (of every host), axis ``DATA_AXIS``."""
  return jax.sharding.Mesh(np.asarray(jax.devices()), (DATA_AXIS,))


def shardings(mesh: jax.sharding.Mesh) -> tuple[jax.sharding.NamedSharding, ...]:
  """(replicated, batch-sharded along the data axis) on ``mesh``."""
  P = jax.sharding.PartitionSpec
  return (jax.sharding.NamedSharding(mesh, P()),
          jax.sharding.NamedSharding(mesh, P(DATA_AXIS)))


def _cast_floats(tree, dtype):
  cast = lambda x: x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x
  return jax.tree.map(cast, tree)


def apply_model(model, params, batch, rng, *, train: bool, sampling_probability, compute_dtype):
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
  replicated, _ = shardings(mesh)
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
  replicated, batch_sharding = shardings(mesh)
  lr_fn = optim.learning_rate_schedule(config.train)
  dtype = jnp.dtype(config.train.compute_dtype)

  def step_fn(state: TrainState, batch: Batch):
    rng = jax.random.fold_in(state.rng, state.step)
    sp = schedules.sampling_probability(state.step, config.model, True)  # 0.0: teacher forcing

    def loss_fn(params):
      outputs = apply_model(model, params, batch, rng, train=True, sampling_probability=sp,
                       compute_dtype=dtype)
      return losses.compute_loss(outputs, batch, state.step, config.model)

    (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    global_norm = optax.tree.norm(grads)
    # A non-finite loss or gradient leaves params and optimiser state as they were.
    finite = jnp.isfinite(loss) & jnp.isfinite(global_norm)
    params, opt_state = jax.tree.map(lambda new, old: jnp.where(finite, new, old),
                                     (params, opt_state), (state.params, state.opt_state))
    metrics = dict(metrics, loss=loss, global_norm=global_norm,
                   learning_rate=lr_fn(state.step), sampling_probability=sp,
                   skipped=1.0 - finite.astype(jnp.float32))
    return state.replace(step=state.step + 1, params=params, opt_state=opt_state), metrics

  return jax.jit(step_fn, in_shardings=(replicated, batch_sharding),
                 out_shardings=(replicated, replicated), donate_argnums=0)


def eval_passes(config: ml_collections.ConfigDict, step: int) -> tuple[dict[str, float], str]:
  """Sampling probability of each evaluation pass, and the pass Magenta's eval reports.

  ``teacher_forced`` (p=0) and ``free_running`` (p=1: the decoder feeds back its own
  samples). Magenta evaluates at the schedule's eval value (1 for any non-constant
  schedule, the rate for a constant one); that pass's metrics are also reported unprefixed.
  A MusicRNN (no sampled decoder inputs) has the teacher-forced pass only.
  """
  if config.model.get("architecture", "music_vae") == "music_rnn":
    return {"teacher_forced": 0.0}, "teacher_forced"
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
  replicated, batch_sharding = shardings(mesh)
  dtype = jnp.dtype(config.train.compute_dtype)

  def eval_fn(params, batch, rng, step, sp: float):
    outputs = apply_model(model, params, batch, rng, train=False, sampling_probability=sp,
                     compute_dtype=dtype)
    loss, metrics = losses.compute_loss(outputs, batch, step, config.model)
    return dict(metrics, loss=loss)

  return jax.jit(eval_fn, in_shardings=(replicated, batch_sharding, replicated, replicated),
                 out_shardings=replicated, static_argnums=4)


def evaluate_params(config: ml_collections.ConfigDict, eval_step, params, step: int,
                    batches: Iterable[Batch], stop: Callable[[], bool] = lambda: False
                    ) -> Metrics | None:
  """Mean metrics over ``batches`` for every pass of :func:`eval_passes`: step means
  (:func:`losses.is_step_mean`) weighted by each batch's valid steps, the rest per batch.

  ``None`` when ``stop()`` turned true before the last batch.
  """
  passes, magenta = eval_passes(config, step)
  base_rng = jax.random.PRNGKey(config.train.seed + 1)
  # Step means count every valid step once (Magenta's streaming metrics), the rest every
  # batch once (equal batches: every example once).
  sums: dict[str, Any] = {}
  count = 0
  for i, batch in enumerate(batches):
    jax.block_until_ready(sums)  # at most one batch in flight: ``stop`` is seen promptly
    if stop():
      return None
    rng = jax.random.fold_in(base_rng, i)
    for name, sp in passes.items():
      metrics = eval_step(params, batch, rng, jnp.int32(step), sp)
      for k, v in metrics.items():
        if losses.is_step_mean(k, config.model):
          v = v * metrics["valid_steps"]
        key = f"{name}/{k}"
        sums[key] = sums[key] + v if key in sums else v
    count += 1
  sums = jax.device_get(sums)
  out = {}
  for key, total in sums.items():
    name, k = key.split("/", 1)
    steps = float(sums[f"{name}/valid_steps"]) if losses.is_step_mean(k, config.model) else count
    out[key] = float(total) / steps if steps else 0.0
  out.update({k.split("/", 1)[1]: v for k, v in list(out.items())
              if k.startswith(magenta + "/")})
  return out
