"""Magenta's optimiser in optax: TF1 Adam, exponential LR decay, clip-or-zero gradients.

Reference notes §1.2 / ``music_vae_train.train``:

* ``lr(step) = (learning_rate - min_learning_rate) * decay_rate**step + min_learning_rate``
  where ``step`` is the global step *before* the update (0 for the first one);
* ``clip_mode='global_norm'``: gradients are clipped to global norm ``grad_clip``, unless
  their (unclipped) global norm is ``>= grad_norm_clip_to_zero``, in which case ALL of them
  are replaced by zeros (the Adam step still runs: moments decay, the step count grows);
  ``clip_mode='value'``: element-wise clipping to ``[-grad_clip, grad_clip]``, no zeroing;
  ``clip_mode='per_variable'`` (MusicRNN: tf_slim ``create_train_op(clip_gradient_norm=)``,
  i.e. ``clip_gradient_norms``): each variable's gradient is clipped to L2 norm
  ``grad_clip`` on its own, ``g * grad_clip / max(|g|, grad_clip)``, no zeroing;
* ``tf.compat.v1.train.AdamOptimizer`` (b1 .9, b2 .999, eps 1e-8) whose update is
  ``lr * sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps)``. That is NOT ``optax.adam``:
  TF1 adds eps to the *uncorrected* ``sqrt(v)``, i.e. optax's form with
  ``eps_hat = eps / sqrt(1 - b2^t)``, which no choice of optax's ``eps``/``eps_root``
  reproduces, hence :func:`scale_by_tf1_adam`.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import optax


def learning_rate_schedule(train_cfg: ml_collections.ConfigDict) -> optax.Schedule:
  """Magenta's exponentially decaying learning rate with a floor."""
  lr = train_cfg.learning_rate
  min_lr = train_cfg.min_learning_rate
  decay_rate = train_cfg.decay_rate
  if not 0.0 < decay_rate <= 1.0:
    raise ValueError(f"train.decay_rate must be in (0, 1], got {decay_rate}")

  def schedule(step):
    return (lr - min_lr) * jnp.power(decay_rate, jnp.asarray(step, jnp.float32)) + min_lr

  return schedule


class Tf1AdamState(NamedTuple):
  count: jax.Array
  mu: optax.Updates
  nu: optax.Updates


def scale_by_tf1_adam(b1: float = 0.9, b2: float = 0.999,
                      eps: float = 1e-8) -> optax.GradientTransformation:
  """``AdamOptimizer``'s direction: ``sqrt(1-b2^t)/(1-b1^t) * m / (sqrt(v) + eps)``."""

  def init_fn(params):
    zeros = lambda p: jnp.zeros_like(p, jnp.float32)
    return Tf1AdamState(jnp.zeros([], jnp.int32), jax.tree.map(zeros, params),
                        jax.tree.map(zeros, params))

  def update_fn(updates, state, params=None):
    del params
    mu = jax.tree.map(lambda m, g: b1 * m + (1 - b1) * g, state.mu, updates)
    nu = jax.tree.map(lambda v, g: b2 * v + (1 - b2) * jnp.square(g), state.nu, updates)
    count = optax.safe_increment(state.count)
    t = count.astype(jnp.float32)
    scale = jnp.sqrt(1 - b2**t) / (1 - b1**t)
    updates = jax.tree.map(lambda m, v: scale * m / (jnp.sqrt(v) + eps), mu, nu)
    return updates, Tf1AdamState(count, mu, nu)

  return optax.GradientTransformation(init_fn, update_fn)


def clip_by_global_norm_or_zero(max_norm: float,
                                zero_norm: float) -> optax.GradientTransformation:
  """Clip to global norm ``max_norm``; all zeros when the global norm is ``>= zero_norm``."""

  def update_fn(updates, state, params=None):
    del params
    norm = optax.tree.norm(updates)
    # max_norm / 0 = inf -> factor 1 (TF leaves all-zero gradients unchanged); a NaN norm
    # fails `norm < zero_norm` and zeroes the step, as TF's tf.cond does.
    keep = norm < zero_norm
    factor = jnp.minimum(1.0, max_norm / norm)
    clip = lambda g: jnp.where(keep, g * factor, 0.0).astype(g.dtype)
    return jax.tree.map(clip, updates), state

  return optax.GradientTransformation(lambda params: optax.EmptyState(), update_fn)


def clip_each_by_norm(max_norm: float) -> optax.GradientTransformation:
  """Clip every leaf to L2 norm ``max_norm`` on its own (TF's ``clip_by_norm`` per variable)."""

  def update_fn(updates, state, params=None):
    del params
    clip = lambda g: (g * (max_norm / jnp.maximum(jnp.linalg.norm(g), max_norm))).astype(g.dtype)
    return jax.tree.map(clip, updates), state

  return optax.GradientTransformation(lambda params: optax.EmptyState(), update_fn)


CLIP_MODES = ("global_norm", "value", "per_variable")


def gradient_clipping(train_cfg: ml_collections.ConfigDict) -> optax.GradientTransformation:
  if train_cfg.clip_mode == "global_norm":
    return clip_by_global_norm_or_zero(train_cfg.grad_clip, train_cfg.grad_norm_clip_to_zero)
  if train_cfg.clip_mode == "value":
    return optax.clip(train_cfg.grad_clip)
  if train_cfg.clip_mode == "per_variable":
    return clip_each_by_norm(train_cfg.grad_clip)
  raise ValueError(
      f"train.clip_mode must be one of {', '.join(CLIP_MODES)}, got {train_cfg.clip_mode!r}")


def create_optimizer(train_cfg: ml_collections.ConfigDict) -> optax.GradientTransformation:
  """Clipping, TF1 Adam and Magenta's learning-rate schedule, chained."""
  return optax.chain(
      gradient_clipping(train_cfg),
      scale_by_tf1_adam(),
      optax.scale_by_learning_rate(learning_rate_schedule(train_cfg)),
  )
