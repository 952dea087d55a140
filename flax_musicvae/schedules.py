"""Magenta's KL-weight and scheduled-sampling schedules (reference notes §1.2)."""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp

SAMPLING_SCHEDULES = ("constant", "exponential", "inverse_sigmoid")


def beta(step, model_cfg: Any):
  """``(1 - beta_rate**step) * max_beta`` (0 at step 0 when beta_rate is 0, since 0**0 = 1)."""
  step = jnp.asarray(step, jnp.float32)
  return (1.0 - jnp.power(jnp.float32(model_cfg.beta_rate), step)) * model_cfg.max_beta


def has_sampling_schedule(model_cfg: Any) -> bool:
  """False for no schedule or ``constant`` at rate 0 (plain teacher forcing)."""
  schedule = model_cfg.sampling_schedule
  return bool(schedule) and not (schedule == "constant" and model_cfg.sampling_rate == 0)


def sampling_probability(step, model_cfg: Any, train: bool):
  """``lstm_utils.get_sampling_probability``; Python 0.0 when there is no schedule.

  At eval (``train=False``) a non-zero schedule becomes constant 1.0 (free running).
  """
  if not has_sampling_schedule(model_cfg):
    return 0.0
  if not train:
    return 1.0
  schedule, rate = model_cfg.sampling_schedule, float(model_cfg.sampling_rate)
  step = jnp.asarray(step, jnp.float32)
  if schedule == "constant":
    if not 0 <= rate <= 1:
      raise ValueError(f"`constant` sampling rate must be in [0, 1], got {rate}")
    return jnp.float32(rate)
  if schedule == "inverse_sigmoid":
    if rate < 1:
      raise ValueError(f"`inverse_sigmoid` sampling rate must be at least 1, got {rate}")
    return 1.0 - rate / (rate + jnp.exp(step / rate))
  if schedule == "exponential":
    if not 0 < rate < 1:
      raise ValueError(f"`exponential` sampling rate must be in (0, 1), got {rate}")
    return 1.0 - jnp.power(jnp.float32(rate), step)
  raise ValueError(f"invalid sampling_schedule {schedule!r}; expected one of "
                   f"{SAMPLING_SCHEDULES}")
