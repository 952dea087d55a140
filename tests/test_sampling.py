"""Samplers: the one rule draws what jax.random draws, and noise inputs reproduce a key."""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from flax_musicvae import config_lib
from flax_musicvae.models import nade
from flax_musicvae.models import sampling
from flax_musicvae.models import vae

BATCH = 64


def _logits(depth: int, seed: int = 0) -> jax.Array:
  return 2.0 * jax.random.normal(jax.random.PRNGKey(seed), (BATCH, depth))


@functools.partial(jax.jit, static_argnums=(0, 4))
def _sample(head, nade_params, logits, key, temperature):
  """One step of a ``KeySampler`` drawing with ``key`` (jitted: eager dispatch is slow)."""
  return sampling.KeySampler(key, temperature).sample(head, nade_params, logits, key)


def test_key_sampler_draws_what_jax_random_draws():
  key, temperature = jax.random.PRNGKey(3), 0.7
  multi = sampling.Head("multi_out", 8, depths=(5, 3))
  logits = _logits(8)
  got = _sample(multi, None, logits, key, temperature)
  keys = jax.random.split(key, 2)
  classes = [jax.random.categorical(k, l / temperature)
             for k, l in zip(keys, jnp.split(logits, [5], -1))]
  np.testing.assert_array_equal(got.argmax(-1), classes[0])            # first part
  np.testing.assert_array_equal(got[:, 5:].argmax(-1), classes[1])
  assert got.sum() == 2 * BATCH                                        # one-hot per part

  groove = sampling.Head("groove", 9)
  logits = _logits(9, seed=1)
  got = _sample(groove, None, logits, key, temperature)
  hits = jax.random.bernoulli(key, jax.nn.sigmoid(logits[:, :3] / temperature))
  np.testing.assert_array_equal(got[:, :3], hits)
  np.testing.assert_allclose(got[:, 3:6], jax.nn.sigmoid(logits[:, 3:6]))
  assert 0 < int(hits.sum()) < hits.size                               # not degenerate


def test_nade_draws_are_bernoulli_of_its_own_conditionals():
  """Dimension i is ``bernoulli(split(key, D)[i], p(x_i = 1 | x_<i))`` (temperature 1)."""
  d, h = 4, 3
  params = nade.NadeParams(d, h).init(jax.random.PRNGKey(0))["params"]
  b_enc, b_dec = jnp.split(_logits(h + d, seed=2), [h], -1)
  key = jax.random.PRNGKey(5)
  head = sampling.Head("nade", d, nade_hidden=h)
  got = _sample(head, params, jnp.concatenate([b_enc, b_dec], -1), key, 1.0)
  _, cond = nade.log_prob(params, got, b_enc, b_dec)
  expected = jnp.stack([jax.random.bernoulli(k, c) for k, c in
                        zip(jax.random.split(key, d), cond.T)], -1)
  np.testing.assert_array_equal(got, expected)


def test_model_sample_from_noise_equals_sample_from_key():
  """``MusicVAE.sample(noise=KeySampler(key).noise(...))`` == ``sample`` with that key,
  for the NADE head (the export tests cover the other families)."""
  model = vae.build_model(config_lib.tiny(config_lib.load("nade_drums_2bar_reduced")))
  sp = model.spec
  z = jax.random.normal(jax.random.PRNGKey(1), (3, sp.z_size))
  variables = jax.jit(lambda z: model.init({"params": jax.random.PRNGKey(0),
                                            "sample": jax.random.PRNGKey(0)},
                                           z, method=vae.MusicVAE.sample))(z)
  key = jax.random.PRNGKey(7)
  sample_key = model.apply(variables, method=lambda m: m.make_rng("sample"),
                           rngs={"sample": key})     # the key sample() hands its decoder
  noise = sampling.KeySampler(sample_key).noise(sp.head, 3, sp.max_seq_len)
  assert noise.shape == (3, sp.max_seq_len, sampling.noise_depth(sp.head))
  run = jax.jit(lambda z, noise, key: (
      model.apply(variables, z, method=vae.MusicVAE.sample, rngs={"sample": key}),
      model.apply(variables, z, noise=noise, method=vae.MusicVAE.sample)))
  from_key, from_noise = run(z, noise, key)
  np.testing.assert_array_equal(from_noise["outputs"], from_key["outputs"])
  np.testing.assert_array_equal(from_noise["logits"], from_key["logits"])
  other, _ = run(z, noise, jax.random.PRNGKey(8))
  assert not np.array_equal(other["outputs"], from_key["outputs"])
