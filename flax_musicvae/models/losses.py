"""Per-step reconstruction losses of each output head and Magenta's loss reduction."""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp

from flax_musicvae import schedules
from flax_musicvae.models import music_rnn
from flax_musicvae.models import nade
from flax_musicvae.models import sampling

Array = jax.Array
LOG_LOSS_EPS = 1e-7   # tf.losses.log_loss default epsilon


def _categorical(logits: Array, target: Array) -> tuple[Array, Array]:
  loss = -jnp.sum(target * jax.nn.log_softmax(logits, -1), -1)
  correct = jnp.argmax(logits, -1) == jnp.argmax(target, -1)
  return loss, correct.astype(jnp.float32)


def step_losses(head: sampling.Head, nade_params: dict | None, logits: Array, target: Array
                ) -> tuple[Array, dict[str, Array]]:
  """Per-step loss ``[B, T]`` and per-step metric ingredients (``step_*`` arrays).

  Computed in float32 whatever the dtype of ``logits`` (mixed precision).
  """
  logits, target = logits.astype(jnp.float32), target.astype(jnp.float32)
  if head.kind in ("categorical", "multi_out"):
    cuts = head.bounds
    parts = [_categorical(l, t) for l, t in zip(jnp.split(logits, cuts, -1),
                                                  jnp.split(target, cuts, -1))]
    loss = sum(p[0] for p in parts)
    correct = jnp.stack([p[1] for p in parts], -1)
    return loss, {"step_correct": correct.mean(-1), "step_part_correct": correct}
  if head.kind == "groove":
    th, tv, to = jnp.split(target, 3, -1)
    lh, lv, lo = jnp.split(logits, 3, -1)
    ph = jax.nn.sigmoid(lh)
    hits = -th * jnp.log(ph + LOG_LOSS_EPS) - (1 - th) * jnp.log(1 - ph + LOG_LOSS_EPS)
    hits, vel = hits.sum(-1), jnp.sum((tv - jax.nn.sigmoid(lv)) ** 2, -1)
    off = jnp.sum((to - jnp.tanh(lo)) ** 2, -1)
    correct = ((lh > 0) == (th > 0.5)).astype(jnp.float32).mean(-1)
    return hits + vel + off, {"step_hits_loss": hits, "step_velocities_loss": vel,
                              "step_offsets_loss": off, "step_correct": correct}
  b_enc, b_dec = logits[..., :head.nade_hidden], logits[..., head.nade_hidden:]
  shape = target.shape[:-1]
  ll, cond = nade.log_prob(nade_params, target.reshape(-1, head.depth),
                           b_enc.reshape(-1, head.nade_hidden), b_dec.reshape(-1, head.depth))
  correct = jnp.all((cond >= 0.5) == (target.reshape(-1, head.depth) > 0.5), -1)
  return -ll.reshape(shape), {"step_correct": correct.reshape(shape).astype(jnp.float32)}


def _masked_mean(x: Array, mask: Array) -> Array:
  return jnp.sum(x * mask) / jnp.maximum(jnp.sum(mask), 1.0)


#: MusicVAE metrics that are means over a batch's valid steps (the rest are per-example means).
_STEP_MEANS = ("accuracy", "hits_loss", "velocities_loss", "offsets_loss")


def is_step_mean(name: str, model_cfg: Any) -> bool:
  """Whether metric ``name`` of :func:`compute_loss` is a mean over the batch's valid steps.

  An evaluation weights such a metric by each batch's ``valid_steps``, as Magenta's
  streaming ``tf.metrics`` over the masked steps do (every MusicRNN metric; MusicVAE's
  accuracies and per-step groove losses; not the per-example losses and KL).
  """
  if name == "valid_steps":
    return False
  if model_cfg.get("architecture", "music_vae") == "music_rnn":
    return True
  return name.split("/")[0] in _STEP_MEANS


def compute_loss(outputs: dict[str, Array], batch: dict[str, Array], step,
                 model_cfg: Any) -> tuple[Array, dict[str, Array]]:
  """``mean(r_loss) + beta * mean(max(KL - free_nats, 0))`` and Magenta's summaries.

  ``r_loss`` sums the per-step loss over each sequence's valid steps; free bits apply to
  the total KL. ``accuracy`` is over all valid steps (argmax for categorical heads, every
  label for NADE, per-instrument hit decisions for groove), ``accuracy/output_{i}`` per
  part for multi-output heads.
  """
  del batch  # the mask comes with the outputs
  if "music_rnn" in outputs:   # MusicRNN: mean cross entropy over valid steps, no KL
    return music_rnn.compute_loss(outputs)
  mask = outputs["mask"]
  r_loss = jnp.sum(outputs["step_loss"] * mask, -1)
  kl = outputs["kl"]
  kl_cost = jnp.maximum(kl - model_cfg.free_bits * math.log(2.0), 0.0)
  b = schedules.beta(step, model_cfg)
  loss = jnp.mean(r_loss) + b * jnp.mean(kl_cost)
  metrics = {"loss": loss, "r_loss": jnp.mean(r_loss), "kl_loss": jnp.mean(kl_cost),
             "kl_bits": jnp.mean(kl / math.log(2.0)), "beta": b,
             "accuracy": _masked_mean(outputs["step_correct"], mask),
             "valid_steps": jnp.sum(mask)}
  if "step_part_correct" in outputs and outputs["step_part_correct"].shape[-1] > 1:
    for i in range(outputs["step_part_correct"].shape[-1]):
      metrics[f"accuracy/output_{i}"] = _masked_mean(outputs["step_part_correct"][..., i], mask)
  for name in ("hits_loss", "velocities_loss", "offsets_loss"):
    if f"step_{name}" in outputs:
      metrics[name] = _masked_mean(outputs[f"step_{name}"], mask)
  return loss, metrics
