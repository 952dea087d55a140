"""Matmul FLOPs counted from jaxprs: hand-computed cases and the flat-model formula."""

import jax
import jax.numpy as jnp
import pytest

from flax_musicvae import config_lib
from flax_musicvae import flops
from flax_musicvae.models import vae


def test_single_matmul_and_scan_by_hand():
  a, b = jnp.ones((3, 5)), jnp.ones((5, 7))
  assert flops.matmul_flops(jnp.dot, a, b) == 2 * 3 * 5 * 7

  def looped(h, w):
    return jax.lax.scan(lambda c, _: (jnp.tanh(c @ w), None), h, None, length=11)[0]

  assert flops.matmul_flops(looped, jnp.ones((4, 6)), jnp.ones((6, 6))) == 11 * 2 * 4 * 6 * 6
  remat = jax.checkpoint(lambda x: x @ b)
  assert flops.matmul_flops(jax.jit(remat), a) == 2 * 3 * 5 * 7


def lstm_flops(inputs, sizes, steps):
  total = 0
  for h in sizes:
    total += 2 * (inputs + h) * 4 * h * steps
    inputs = h
  return total


def flat_forward_flops(m):
  """Hand formula for a flat decoder behind a one-layer bidirectional encoder."""
  (enc,), dec, t = m.enc_rnn_size, tuple(m.dec_rnn_size), m.max_seq_len
  total = 2 * lstm_flops(m.input_depth + m.control_depth, (enc,), t)   # both directions
  total += 2 * 2 * (2 * enc) * m.z_size                                # mu, sigma
  total += 2 * m.z_size * sum(2 * h for h in dec)                      # z -> initial state
  total += lstm_flops(m.output_depth + m.control_depth, dec, t)           # per-step inputs
  total += 2 * m.z_size * 4 * dec[0]     # z's share of layer 0, once per sequence (no dropout)
  return total + 2 * dec[-1] * m.output_depth * t                      # output projection


@pytest.mark.parametrize("name", ["groove_4bar", "cat_mel_2bar_small"])
def test_model_forward_matches_the_flat_formula(name):
  config = config_lib.load(f"{name}")
  config = config_lib.tiny(config, rnn=16, z=8)
  model = vae.build_model(config)
  batch = vae.dummy_batch(config.model, 2)
  keys = {k: jax.random.PRNGKey(0) for k in ("params", "dropout", "sample")}
  params = jax.eval_shape(lambda: model.init(keys, batch, train=False))["params"]
  got = flops.matmul_flops(lambda p: model.apply({"params": p}, batch, train=False,
                                                 rngs=keys), params)
  assert got == 2 * flat_forward_flops(config.model)   # batch of 2


def test_while_loops_are_refused():
  def loop(x):
    return jax.lax.while_loop(lambda c: c[1] < 3, lambda c: (c[0] @ c[0], c[1] + 1), (x, 0))[0]
  with pytest.raises(ValueError, match="static trip count"):
    flops.matmul_flops(loop, jnp.ones((2, 2)))
