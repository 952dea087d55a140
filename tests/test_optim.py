"""Optimiser: Magenta's LR schedule, TF1 Adam semantics, clip-or-zero gradients."""

import math

import jax.numpy as jnp
import numpy as np
import optax
import pytest

from flax_musicvae import config_lib
from flax_musicvae import optim


def _train_cfg(**overrides):
  cfg = config_lib.base_config().train
  cfg.update(overrides)
  return cfg


def _tf1_adam_reference(grads, lr_fn, b1=0.9, b2=0.999, eps=1e-8):
  """tf.compat.v1.train.AdamOptimizer, written out in float64 from its documentation."""
  theta, m, v = 0.0, 0.0, 0.0
  for t, g in enumerate(grads, start=1):
    lr_t = lr_fn(t - 1) * math.sqrt(1 - b2**t) / (1 - b1**t)
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g * g
    theta -= lr_t * m / (math.sqrt(v) + eps)
  return theta


def _run(tx, grads):
  params = jnp.zeros([], jnp.float32)
  state = tx.init(params)
  for g in grads:
    updates, state = tx.update(jnp.float32(g), state, params)
    params = optax.apply_updates(params, updates)
  return float(params)


def test_learning_rate_schedule_matches_magenta_formula():
  schedule = optim.learning_rate_schedule(_train_cfg())
  assert float(schedule(0)) == pytest.approx(1e-3, rel=1e-6)
  # (1e-3 - 1e-5) * 0.9999**10000 + 1e-5 = 9.9e-4 * 0.36786 + 1e-5; float32 like TF's
  # tf.pow(decay_rate, to_float(step)), where 0.9999 rounds to 0.99989998.
  assert float(schedule(10_000)) == pytest.approx(9.9e-4 * 0.9999**10_000 + 1e-5, rel=1e-3)
  assert float(schedule(10_000_000)) == pytest.approx(1e-5, rel=1e-4)


def test_bad_decay_rate_and_clip_mode_raise():
  with pytest.raises(ValueError, match="decay_rate"):
    optim.learning_rate_schedule(_train_cfg(decay_rate=1.5))
  with pytest.raises(ValueError, match="clip_mode"):
    optim.create_optimizer(_train_cfg(clip_mode="norm"))


def test_tf1_adam_first_step_by_hand():
  # t=1, g=1e-7: m = 1e-8, v = 1e-17, lr_t = 1e-3 * sqrt(1e-3) / 0.1;
  # step = lr_t * m / (sqrt(v) + eps) = 1e-3 * sqrt(1e-3) * 1e-7 / (sqrt(1e-3) * 1e-7 + 1e-8).
  g = 1e-7
  expected = -1e-3 * math.sqrt(1e-3) * g / (math.sqrt(1e-3) * g + 1e-8)
  assert expected == pytest.approx(-2.402e-4, rel=1e-3)
  tx = optax.chain(optim.scale_by_tf1_adam(), optax.scale(-1e-3))
  assert _run(tx, [g]) == pytest.approx(expected, rel=1e-5)
  # optax.adam puts eps on the bias-corrected sqrt(v): a visibly different step.
  assert _run(optax.adam(1e-3), [g]) == pytest.approx(-1e-3 * g / (g + 1e-8), rel=1e-5)


def test_full_optimizer_matches_tf1_reference_over_steps():
  cfg = _train_cfg(learning_rate=1e-2, decay_rate=0.9, min_learning_rate=1e-4, grad_clip=100.0)
  grads = [0.5, -2e-6, 3.0, 1e-7, -0.25]
  lr_fn = lambda step: (1e-2 - 1e-4) * 0.9**step + 1e-4
  # optax.adam would update by -lr*m_hat/(sqrt(v_hat)+eps) and ignore min_lr/decay.
  expected = _tf1_adam_reference(grads, lr_fn)
  assert _run(optim.create_optimizer(cfg), grads) == pytest.approx(expected, rel=1e-5)


def test_clip_by_global_norm_or_zero():
  tx = optim.clip_by_global_norm_or_zero(1.0, 10.0)
  state = tx.init(None)
  clip = lambda g: tx.update(g, state)[0]
  big = {"a": jnp.array([3.0, 4.0]), "b": jnp.zeros([2])}          # norm 5 -> 1
  np.testing.assert_allclose(clip(big)["a"], [0.6, 0.8], rtol=1e-6)
  small = {"a": jnp.array([0.3, 0.4]), "b": jnp.array([0.0, 0.0])}  # norm .5: unchanged
  np.testing.assert_allclose(clip(small)["a"], [0.3, 0.4], rtol=1e-6)
  at_limit = {"a": jnp.array([6.0, 8.0]), "b": jnp.zeros([2])}     # norm 10 >= 10: zeros
  assert not np.any(np.asarray(clip(at_limit)["a"]))
  nan = {"a": jnp.array([np.nan, 1.0]), "b": jnp.zeros([2])}
  assert not np.any(np.asarray(clip(nan)["a"]))
  zero = {"a": jnp.zeros([2]), "b": jnp.zeros([2])}
  assert np.all(np.isfinite(np.asarray(clip(zero)["a"])))


def test_per_variable_clipping_is_tf_slims_clip_gradient_norms():
  """Each variable on its own: norm 5 -> 1, norm 0.5 unchanged, zeros stay zeros (by hand)."""
  tx = optim.gradient_clipping(_train_cfg(clip_mode="per_variable", grad_clip=1.0))
  grads = {"a": jnp.array([3.0, 4.0]), "b": jnp.array([[0.3], [0.4]]), "c": jnp.zeros([2])}
  got = tx.update(grads, tx.init(None))[0]
  np.testing.assert_allclose(got["a"], [0.6, 0.8], rtol=1e-6)
  np.testing.assert_allclose(got["b"], [[0.3], [0.4]], rtol=1e-6)   # global norm would clip it
  np.testing.assert_array_equal(got["c"], [0.0, 0.0])


def test_music_rnn_configs_clip_as_magenta():
  """Magenta's events_rnn_graph trains with create_train_op(clip_gradient_norm=clip_norm)."""
  config = config_lib.load("drum_kit_rnn")
  assert (config.train.clip_mode, config.train.grad_clip) == ("per_variable", 3.0)


def test_zeroed_step_still_advances_adam():
  # Magenta zeroes the gradients but still applies the Adam step: the momentum from
  # step 1 keeps moving the parameter at step 2, exactly as the TF1 reference does.
  cfg = _train_cfg(grad_clip=1.0, grad_norm_clip_to_zero=100.0, decay_rate=1.0)
  lr_fn = lambda step: 1e-3
  expected = _tf1_adam_reference([0.5, 0.0], lr_fn)
  got = _run(optim.create_optimizer(cfg), [0.5, 1e6])
  assert got == pytest.approx(expected, rel=1e-5)
  assert got < _run(optim.create_optimizer(cfg), [0.5])


def test_value_clipping():
  cfg = _train_cfg(clip_mode="value", grad_clip=0.1, decay_rate=1.0)
  expected = _tf1_adam_reference([0.1, -0.1], lambda step: 1e-3)
  assert _run(optim.create_optimizer(cfg), [5.0, -1e6]) == pytest.approx(expected, rel=1e-5)
