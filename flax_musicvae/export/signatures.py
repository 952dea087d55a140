"""Pure JAX ``encode`` / ``decode`` / ``sample`` functions with the randomness as inputs.

Exported graphs cannot generate random numbers, so the sampling noise is an input and the
decode is ``MusicVAE.sample`` with a ``sampling.NoiseSampler`` (see :mod:`sampling` for
the rule):

* categorical / multi-out / split heads: Gumbel noise ``g [B, T, output_depth]``; the
  step's class is ``argmax(logits / T + g)`` per output part (Gumbel-max, exactly what
  ``jax.random.categorical`` computes).
* groove heads: uniform noise ``u [B, T, num_drums]``; a hit is
  ``u < sigmoid(hit_logit / T)`` (``jax.random.bernoulli``).

Zero Gumbel noise (or ``u = 0.5``) gives the greedy / threshold decode.
:func:`noise_from_key` derives the noise from a key exactly as the model's own sampler
(``MusicVAE.sample``) splits and uses it, so both give identical samples.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp

from flax_musicvae.models import sampling
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
    raise NotImplementedError("NADE decoders are not exported (their per-dimension "
                              "sampling scan is not checked through jax2tf / LiteRT)")
  if not spec.z_size:
    raise NotImplementedError("models without a latent (z_size=0) are not exported")


def noise_kind(spec: ModelSpec) -> str:
  """'uniform' (groove hits) or 'gumbel' (categorical classes)."""
  return sampling.noise_kind(spec.head)


def noise_depth(spec: ModelSpec) -> int:
  return sampling.noise_depth(spec.head)


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


def noise_from_key(spec: ModelSpec, key: Array, batch: int) -> Array:
  """The sampling noise ``MusicVAE.sample`` draws from its sample key ``key``: what its
  ``sampling.KeySampler`` draws, split per segment and per core as the decoder splits it."""
  def core(sampler: sampling.KeySampler, steps: int) -> Array:
    if spec.flat_decoder == "split":   # one sampler per core, each a one-part categorical
      depths = spec.output_depths
      return jnp.concatenate([p.noise(sampling.Head("categorical", d), batch, steps)
                              for p, d in zip(sampler.parts(depths), depths)], -1)
    return sampler.noise(spec.head, batch, steps)

  sampler = sampling.KeySampler(key)
  if spec.decoder != "hierarchical":
    return core(sampler, spec.max_seq_len)
  segments, seg_len = spec.level_lengths
  return jnp.concatenate([core(sampler.segment(k), seg_len)
                          for k in sampler.segments(segments)], 1)


# ----------------------------------------------------------------------------- sampling


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
  res = model.apply({"params": params}, z, temperature=jnp.asarray(temperature, jnp.float32),
                    controls=controls, noise=noise, method=MusicVAE.sample)
  samples = res["outputs"]
  out = {"outputs": samples, "logits": res["logits"]}
  if sp.head.kind != "groove":
    out["tokens"] = jnp.stack([jnp.argmax(p, -1).astype(jnp.int32)
                               for p in jnp.split(samples, sp.head.bounds, -1)], -1)
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
