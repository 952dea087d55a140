"""Pure JAX ``encode`` / ``decode`` / ``sample`` functions with the randomness as inputs.

Exported graphs cannot generate random numbers, so the sampling noise is an input:

* categorical / multi-out / split heads: Gumbel noise ``g [B, T, output_depth]``; the
  step's class is ``argmax(logits / T + g)`` per output part (Gumbel-max, exactly what
  ``jax.random.categorical`` computes).
* groove heads: uniform noise ``u [B, T, num_drums]``; a hit is
  ``u < sigmoid(hit_logit / T)`` (``jax.random.bernoulli``).

Zero Gumbel noise (or ``u = 0.5``) gives the greedy / threshold decode.
:func:`noise_from_key` derives the noise from a key exactly as the model's own sampler
(``MusicVAE.sample``) splits and uses it, so both give identical samples.
"""

# The decoders' own state-merge and segment helpers are reused so layouts match exactly.
# pylint: disable=protected-access

from __future__ import annotations

import dataclasses
import itertools
from typing import Callable

import jax
import jax.numpy as jnp

from flax_musicvae.models import decoders
from flax_musicvae.models import lstm
from flax_musicvae.models.vae import ModelSpec, MusicVAE

Array = jax.Array
SIGNATURES = ("encode", "decode", "sample")


@dataclasses.dataclass(frozen=True)
class TensorSpec:
  name: str
  shape: tuple[int, ...]
  dtype: str = "float32"


def check_exportable(spec: ModelSpec) -> None:
  """Raises for models this export does not cover (NADE heads, no latent)."""
  if spec.head.kind == "nade":
    raise NotImplementedError("NADE decoders are not exported (their sampler draws "
                              "per-dimension Bernoulli noise inside the NADE)")
  if not spec.z_size:
    raise NotImplementedError("models without a latent (z_size=0) are not exported")


def noise_kind(spec: ModelSpec) -> str:
  """'uniform' (groove hits) or 'gumbel' (categorical classes)."""
  return "uniform" if spec.head.kind == "groove" else "gumbel"


def noise_depth(spec: ModelSpec) -> int:
  return spec.output_depth // 3 if spec.head.kind == "groove" else spec.output_depth


def input_specs(spec: ModelSpec, batch: int) -> dict[str, list[TensorSpec]]:
  """The inputs of each signature for a fixed ``batch`` size."""
  t, controls = spec.max_seq_len, []
  if spec.control_depth:
    controls = [TensorSpec("controls", (batch, t, spec.control_depth))]
  noise = TensorSpec("noise", (batch, t, noise_depth(spec)))
  temperature = TensorSpec("temperature", ())
  return {
      "encode": [TensorSpec("inputs", (batch, t, spec.input_depth)),
                 TensorSpec("lengths", (batch,), "int32")] + controls,
      "decode": [TensorSpec("z", (batch, spec.z_size)), noise, temperature] + controls,
      "sample": [TensorSpec("z_noise", (batch, spec.z_size)), noise, temperature] + controls,
  }


# ----------------------------------------------------------------------------- noise


def _part_noise(kind: str, key: Array, batch: int, parts: tuple[int, ...]) -> Array:
  """One step's noise as ``head_sample`` draws it: one key per output part."""
  if kind == "uniform":
    return jax.random.uniform(key, (batch, parts[0] // 3))
  keys = jax.random.split(key, len(parts))
  return jnp.concatenate([jax.random.gumbel(k, (batch, d)) for k, d in zip(keys, parts)], -1)


def _flat_noise(kind: str, key: Array, batch: int, steps: int,
                parts: tuple[int, ...]) -> Array:
  """``FlatDecoder.stepwise``: one key per step (``split(key, steps)``) -> ``[B, T, D]``."""
  noise = jax.vmap(lambda k: _part_noise(kind, k, batch, parts))(jax.random.split(key, steps))
  return jnp.swapaxes(noise, 0, 1)


def _core_noise(spec: ModelSpec, key: Array, batch: int, steps: int) -> Array:
  kind = noise_kind(spec)
  if spec.flat_decoder == "split":   # one key per core, each a one-part categorical
    keys = jax.random.split(key, len(spec.output_depths))
    return jnp.concatenate([_flat_noise(kind, k, batch, steps, (d,))
                            for k, d in zip(keys, spec.output_depths)], -1)
  return _flat_noise(kind, key, batch, steps, spec.head.parts)


def noise_from_key(spec: ModelSpec, key: Array, batch: int) -> Array:
  """The sampling noise ``MusicVAE.sample`` draws from its sample key ``key``."""
  if spec.decoder != "hierarchical":
    return _core_noise(spec, key, batch, spec.max_seq_len)
  segments, seg_len = spec.level_lengths
  keys = jax.random.split(key, segments)
  return jnp.concatenate([_core_noise(spec, k, batch, seg_len) for k in keys], 1)


# ----------------------------------------------------------------------------- sampling


def part_bounds(head: decoders.Head) -> list[int]:
  """Split points of the output parts along the depth axis."""
  return list(itertools.accumulate(head.parts))[:-1]


def _choose(head: decoders.Head, logits: Array, noise: Array, temperature: Array) -> Array:
  """One step's sample from its logits and noise (``decoders.head_sample`` with noise)."""
  if head.kind == "groove":
    hits, vel, off = jnp.split(logits, 3, axis=-1)
    hits = (noise < jax.nn.sigmoid(hits / temperature)).astype(logits.dtype)
    return jnp.concatenate([hits, jax.nn.sigmoid(vel), jnp.tanh(off)], -1)
  bounds = part_bounds(head)
  return jnp.concatenate(
      [jax.nn.one_hot(jnp.argmax(l / temperature + g, -1), l.shape[-1], dtype=l.dtype)
       for l, g in zip(jnp.split(logits, bounds, -1), jnp.split(noise, bounds, -1))], -1)


def _flat_sample(dec: decoders.FlatDecoder, z: Array, aux: Array, noise: Array,
                 temperature: Array, start: Array):
  """Free-running ``FlatDecoder``: ``(logits, samples, final_state)``, batch-major."""
  s = dec.settings

  def body(carry, xs):
    state, prev = carry
    aux_t, noise_t = xs
    x = jnp.concatenate([prev, z, aux_t], -1)
    state, h = lstm.stack_step(dec.params["layers"], state, x, 1.0, None, s.residual)
    logits = dec.project(h)
    smp = _choose(dec.head, logits, noise_t, temperature)
    return (state, smp), (logits, smp)

  (state, _), (logits, samples) = jax.lax.scan(
      body, (dec.initial_state(z), start), (lstm.time_major(aux), lstm.time_major(noise)))
  return lstm.time_major(logits), lstm.time_major(samples), state


def _core_sample(dec, z, aux, noise, temperature, start):
  if not isinstance(dec, decoders.SplitDecoder):
    return _flat_sample(dec, z, aux, noise, temperature, start)
  bounds = part_bounds(dec.head)
  outs = [_flat_sample(c, z, aux, n, temperature, st) for c, n, st in
          zip(dec.cores, jnp.split(noise, bounds, -1), jnp.split(start, bounds, -1))]
  return (jnp.concatenate([o[0] for o in outs], -1),
          jnp.concatenate([o[1] for o in outs], -1),
          decoders._merge_states([o[2] for o in outs]))


def _hierarchical_sample(dec: decoders.HierarchicalDecoder, z, aux, noise, temperature, start):
  """Conductor step per segment, then the core decoder over the segment."""
  st = dec.settings

  def body(carry, xs):
    cstate, feedback, prev = carry
    seg_aux, seg_noise = xs
    x = jnp.concatenate([feedback, z], -1) if dec.autoregressive else feedback
    cstate, emb = lstm.stack_step(dec.params["layers"], cstate, x, 1.0, None, st.residual)
    logits, smp, final = _core_sample(dec.core, emb, seg_aux, seg_noise, temperature, prev)
    fb = decoders.flat_state(final) if dec.autoregressive else jnp.zeros_like(feedback)
    return (cstate, fb, smp[:, -1]), (logits, smp)

  feedback = jnp.zeros((z.shape[0], dec._core_state_size() if dec.autoregressive else 1),
                       z.dtype)
  init = (dec._conductor_init(z), feedback, start)
  _, (logits, samples) = jax.lax.scan(
      body, init, (dec._segments(aux), dec._segments(noise)))
  return dec._unsegment(logits), dec._unsegment(samples)


def decode_with_noise(model: MusicVAE, params, z: Array, noise: Array, temperature: Array,
                      controls: Array | None = None) -> dict[str, Array]:
  """``MusicVAE.sample`` from ``z`` with explicit sampling noise (see module docstring).

  Returns ``outputs`` (one-hot / hits|velocities|offsets), ``logits`` and, for
  categorical heads, ``tokens [B, T, parts]`` (int32 class per output part).
  """
  sp = model.spec
  check_exportable(sp)
  batch, steps = z.shape[0], sp.max_seq_len
  if noise.shape != (batch, steps, noise_depth(sp)):
    raise ValueError(f"noise shape {noise.shape} != {(batch, steps, noise_depth(sp))}")
  if controls is None:
    controls = jnp.zeros((batch, steps, 0), jnp.float32)
  dec = model.apply({"params": params}, method=lambda m: m.decoder())
  start = jnp.zeros((batch, sp.output_depth), jnp.float32)
  temperature = jnp.asarray(temperature, jnp.float32)
  if isinstance(dec, decoders.HierarchicalDecoder):
    logits, samples = _hierarchical_sample(dec, z, controls, noise, temperature, start)
  else:
    logits, samples, _ = _core_sample(dec, z, controls, noise, temperature, start)
  out = {"outputs": samples, "logits": logits}
  if sp.head.kind != "groove":
    bounds = part_bounds(sp.head)
    out["tokens"] = jnp.stack([jnp.argmax(p, -1).astype(jnp.int32)
                               for p in jnp.split(samples, bounds, -1)], -1)
  return out


def encode(model: MusicVAE, params, inputs: Array, lengths: Array,
           controls: Array | None = None) -> dict[str, Array]:
  batch = {"inputs": inputs, "lengths": lengths}
  if controls is not None:
    batch["controls"] = controls
  mu, sigma = model.apply({"params": params}, batch, method=MusicVAE.encode)
  return {"mu": mu, "sigma": sigma}


def sample(model: MusicVAE, params, z_noise: Array, noise: Array, temperature: Array,
           controls: Array | None = None) -> dict[str, Array]:
  """Prior sample: ``z = z_noise`` (standard normal noise), then :func:`decode_with_noise`."""
  out = decode_with_noise(model, params, z_noise, noise, temperature, controls)
  return {"z": z_noise, **out}


def functions(model: MusicVAE) -> dict[str, Callable]:
  """``name -> fn(params, *inputs)`` in the order of :func:`input_specs`."""
  return {
      "encode": lambda p, *a: encode(model, p, *a),
      "decode": lambda p, *a: decode_with_noise(model, p, *a),
      "sample": lambda p, *a: sample(model, p, *a),
  }
