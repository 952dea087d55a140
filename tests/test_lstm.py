"""LSTMBlockCell math, length masking, bidirectional encoding, dropout and remat."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flax_musicvae.models import encoders
from flax_musicvae.models import lstm

jax.config.update("jax_default_matmul_precision", "highest")


def _sigmoid(x):
  return 1 / (1 + np.exp(-x))


def _layer(rng, in_size, units):
  return {"kernel": jnp.asarray(rng.normal(0, 0.5, (in_size + units, 4 * units)), jnp.float32),
          "bias": jnp.asarray(rng.normal(0, 0.1, (4 * units,)), jnp.float32)}


def test_cell_step_matches_lstm_block_cell_formula():
  rng = np.random.default_rng(0)
  p = _layer(rng, 3, 2)
  x, c, h = (rng.normal(size=(4, n)).astype(np.float32) for n in (3, 2, 2))
  (c1, h1), out = lstm.layer_step(p, (c, h), x)
  i, j, f, o = np.split(np.concatenate([x, h], -1) @ p["kernel"] + p["bias"], 4, -1)
  c_ref = _sigmoid(f + 1.0) * c + _sigmoid(i) * np.tanh(j)   # forget bias 1.0
  np.testing.assert_allclose(c1, c_ref, atol=1e-6)
  np.testing.assert_allclose(h1, _sigmoid(o) * np.tanh(c_ref), atol=1e-6)
  np.testing.assert_array_equal(out, h1)


def test_layer_cell_declares_tf_layout():
  variables = lstm.LSTMStack((5, 3)).init(jax.random.PRNGKey(0), 7)
  shapes = jax.tree.map(jnp.shape, variables["params"])
  assert shapes == {"cell_0": {"lstm_cell": {"kernel": (12, 20), "bias": (20,)}},
                    "cell_1": {"lstm_cell": {"kernel": (8, 12), "bias": (12,)}}}


def test_masked_layer_equals_run_on_truncated_sequence():
  rng = np.random.default_rng(1)
  p = _layer(rng, 3, 4)
  xs = jnp.asarray(rng.normal(size=(3, 6, 3)), jnp.float32)
  lengths = jnp.array([6, 2, 0])
  out, (c, h) = lstm.run_layer(p, xs, lengths)
  for b, n in enumerate([6, 2, 0]):
    ref_out, (ref_c, ref_h) = lstm.run_layer(p, xs[b:b + 1, :n], None)
    np.testing.assert_allclose(out[b, :n], ref_out[0], atol=1e-6)
    np.testing.assert_array_equal(out[b, n:], 0.0)      # dynamic_rnn zeros past the length
    np.testing.assert_allclose(h[b], ref_h[0] if n else 0.0, atol=1e-6)  # frozen state
    np.testing.assert_allclose(c[b], ref_c[0] if n else 0.0, atol=1e-6)


def test_reverse_valid_is_reverse_sequence():
  xs = jnp.arange(10.0).reshape(2, 5, 1)
  rev = lstm.reverse_valid(xs, jnp.array([3, 5]))
  np.testing.assert_array_equal(rev[..., 0], [[2, 1, 0, 3, 4], [9, 8, 7, 6, 5]])


def test_bidirectional_encoder_honours_lengths():
  """Padding an example must not change its embedding (bw runs on the valid part)."""
  enc = encoders.BidirectionalEncoder((4, 3), input_size=2)
  rng = np.random.default_rng(2)
  xs = jnp.asarray(rng.normal(size=(2, 7, 2)), jnp.float32)
  variables = enc.init(jax.random.PRNGKey(0), xs, None, None)
  padded = enc.apply(variables, xs, jnp.array([7, 4]), None)
  np.testing.assert_allclose(padded[0], enc.apply(variables, xs[:1], None, None)[0], atol=1e-6)
  np.testing.assert_allclose(padded[1], enc.apply(variables, xs[1:, :4], None, None)[0],
                             atol=1e-6)
  garbage = xs.at[1, 4:].set(100.0)
  np.testing.assert_allclose(enc.apply(variables, garbage, jnp.array([7, 4]), None), padded,
                             atol=1e-6)


def test_input_dropout():
  x = jnp.ones((200, 50))
  assert lstm.input_dropout(x, 0.3, None) is x            # eval: no dropout
  assert lstm.input_dropout(x, 1.0, jax.random.PRNGKey(0)) is x
  y = np.asarray(lstm.input_dropout(x, 0.3, jax.random.PRNGKey(0)))
  np.testing.assert_allclose(np.unique(y), [0.0, 1 / 0.3], rtol=1e-6)
  assert abs((y > 0).mean() - 0.3) < 0.02


@pytest.mark.parametrize("remat", [False, True])
def test_stepwise_stack_equals_layerwise_and_remat_keeps_grads(remat):
  rng = np.random.default_rng(3)
  layers = [_layer(rng, 3, 4), _layer(rng, 4, 5)]
  xs = jnp.asarray(rng.normal(size=(2, 5, 3)), jnp.float32)

  def stepwise(layers):
    def body(state, x):
      return lstm.stack_step(layers, state, x, 1.0, None)
    _, out = lstm.scan(body, lstm.zero_state(layers, 2), lstm.time_major(xs), remat)
    return lstm.time_major(out)

  def layerwise(layers):
    return lstm.run_stack(layers, xs, None, remat=remat)[0]

  np.testing.assert_allclose(stepwise(layers), layerwise(layers), atol=1e-6)
  g1 = jax.grad(lambda p: stepwise(p).sum())(layers)
  g2 = jax.grad(lambda p: lstm.run_stack(p, xs, None, remat=False)[0].sum())(layers)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5), g1, g2)


def test_split_state_order():
  layers = [{"bias": jnp.zeros(8)}, {"bias": jnp.zeros(12)}]
  flat = jnp.arange(10.0)[None]
  (c0, h0), (c1, h1) = lstm.split_state(flat, layers)
  assert [a.shape[-1] for a in (c0, h0, c1, h1)] == [2, 2, 3, 3]
  np.testing.assert_array_equal(h1[0], [7, 8, 9])


def test_residual_layer_adds_projected_input():
  """ResidualWrapper(InputProjectionWrapper(cell)): output = h + (x @ P + b)."""
  stack = lstm.LSTMStack((4, 4), residual=True)
  layers = stack.init(jax.random.PRNGKey(0), 3)
  layers = stack.apply(layers, 3)
  assert "proj_kernel" in layers[0] and "proj_kernel" not in layers[1]  # same size: no proj
  xs = jnp.asarray(np.random.default_rng(4).normal(size=(2, 5, 3)), jnp.float32)
  out, _ = lstm.run_stack(layers, xs, None, residual=True)
  projected = xs @ layers[0]["proj_kernel"] + layers[0]["proj_bias"]
  h0, _ = lstm.run_stack(layers[:1], xs, None)   # layer 0 without the skip
  np.testing.assert_allclose(lstm.run_stack(layers[:1], xs, None, residual=True)[0],
                             h0 + projected, atol=1e-6)
  assert out.shape == (2, 5, 4)


def test_hand_written_backward_matches_autodiff_with_masking_and_initial_state():
  """``masked_recurrence``'s custom VJP equals autodiff of the plain scan (remat path)."""
  k = jax.random.split(jax.random.PRNGKey(3), 5)
  batch, steps, depth, hidden = 4, 7, 3, 5
  p = {"kernel": jax.random.normal(k[0], (depth + hidden, 4 * hidden)) * 0.5,
       "bias": jax.random.normal(k[1], (4 * hidden,)) * 0.1}
  xs = jax.random.normal(k[2], (batch, steps, depth))
  init = (jax.random.normal(k[3], (batch, hidden)), jax.random.normal(k[4], (batch, hidden)))
  lengths = jnp.array([7, 4, 1, 0])

  def loss(p, xs, init, remat):
    out, (c, h) = lstm.run_layer(p, xs, lengths, initial=init, remat=remat)
    return jnp.sum(jnp.sin(out)) + jnp.sum(c ** 2) + jnp.sum(jnp.cos(h))

  plain = jax.grad(loss, argnums=(0, 1, 2))(p, xs, init, True)
  custom = jax.grad(loss, argnums=(0, 1, 2))(p, xs, init, False)
  for a, b in zip(jax.tree.leaves(plain), jax.tree.leaves(custom)):
    np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-5)
