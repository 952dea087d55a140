"""NADE with external biases (Magenta's ``magenta.common.Nade``), as pure functions.

Both functions compute in float32 whatever the dtype of their arguments (the NADE is a
loss / sampling head; see ``losses.step_losses``).
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

Array = jax.Array


def _safe_log(x: Array) -> Array:
  return jnp.log(1e-6 + x)


def _float32(*trees):
  return jax.tree.map(lambda x: x.astype(jnp.float32), trees)


class NadeParams(nn.Module):
  """Declares ``w_enc [D, 1, H]`` and ``w_dec_t [D, H, 1]`` (truncated normal, std 1/sqrt(D))."""
  num_dims: int
  num_hidden: int

  @nn.compact
  def __call__(self) -> dict[str, Array]:
    init = nn.initializers.truncated_normal(1.0 / math.sqrt(self.num_dims))
    return {"w_enc": self.param("w_enc", init, (self.num_dims, 1, self.num_hidden)),
            "w_dec_t": self.param("w_dec_t", init, (self.num_dims, self.num_hidden, 1))}


def log_prob(p: dict[str, Array], x: Array, b_enc: Array, b_dec: Array
             ) -> tuple[Array, Array]:
  """``log p(x)`` ``[N]`` and conditionals ``p(x_i = 1 | x_<i)`` ``[N, D]`` for ``x [N, D]``."""
  p, x, b_enc, b_dec = _float32(p, x, b_enc, b_dec)
  def body(a, inp):
    v, w_enc, w_dec, b = inp
    cond = jax.nn.sigmoid(b + jax.nn.sigmoid(a) @ w_dec[:, 0])
    lp = v * _safe_log(cond) + (1 - v) * _safe_log(1 - cond)
    return a + v[:, None] * w_enc[0], (lp, cond)

  xs = (x.T, p["w_enc"], p["w_dec_t"], b_dec.T)
  _, (lp, cond) = jax.lax.scan(body, b_enc, xs)
  return lp.sum(0), cond.T


def uniform_noise(key: Array, batch: int, num_dims: int) -> Array:
  """The uniform noise ``[N, D]`` of one draw: dimension ``i`` from ``split(key, D)[i]``."""
  return jax.vmap(lambda k: jax.random.uniform(k, (batch,)))(
      jax.random.split(key, num_dims)).T


def sample(p: dict[str, Array], b_enc: Array, b_dec: Array, noise: Array | None,
           temperature: float | Array | None) -> Array:
  """Sequential draws (float32): dimension ``i`` is 1 where ``noise[:, i] < p(x_i = 1 |
  x_<i)`` (tempered); ``temperature=None`` thresholds at 0.5 (Magenta) and needs no noise."""
  p, b_enc, b_dec = _float32(p, b_enc, b_dec)
  if noise is None:
    noise = jnp.zeros_like(b_dec)

  def body(a, inp):
    w_enc, w_dec, b, u = inp
    logit = b + jax.nn.sigmoid(a) @ w_dec[:, 0]
    if temperature is None:
      v = (jax.nn.sigmoid(logit) >= 0.5).astype(a.dtype)
    else:
      v = (u < jax.nn.sigmoid(logit / temperature)).astype(a.dtype)
    return a + v[:, None] * w_enc[0], v

  _, v = jax.lax.scan(body, b_enc, (p["w_enc"], p["w_dec_t"], b_dec.T, noise.T))
  return v.T
