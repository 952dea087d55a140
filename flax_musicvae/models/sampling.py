"""Output heads and their sampling: where a step-wise decode's randomness comes from.

:class:`Head` says what a decoder's output projection means; :func:`choose` turns one
step's logits and noise into its sample (Magenta's ``_sample``):

* categorical / multi-out parts: Gumbel noise ``g``; the class is ``argmax(logits / T + g)``
  per output part (Gumbel-max, exactly what ``jax.random.categorical`` computes);
* groove hits: uniform noise ``u``; a hit is ``u < sigmoid(hit_logit / T)``
  (``jax.random.bernoulli``); velocities and offsets are deterministic;
* NADE: uniform noise per dimension, drawn in order inside the NADE (:func:`nade.sample`).

``temperature=None`` is the greedy / threshold choice and ignores the noise. Probabilities
are computed in float32; the sample has the dtype of the logits. Two samplers feed the rule:

* :class:`KeySampler` (the model's own ``sample()`` and scheduled sampling) draws each
  step's noise from a key split per step, per core of a split decoder and per segment of a
  hierarchical one;
* :class:`NoiseSampler` (export: graphs cannot draw random numbers) takes the whole
  decode's noise ``[B, T, noise_depth]`` as an input.

A decoder asks its sampler for per-step inputs (:meth:`steps`, scanned with the decode),
splits it per core (:meth:`parts`) and per segment (:meth:`segments` then :meth:`segment`),
and calls :meth:`sample` at each step. :meth:`KeySampler.noise` gives the noise a key
sampler draws, so both samplers give identical samples from the same key.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any, Protocol, Sequence

import jax
import jax.numpy as jnp

from flax_musicvae.models import lstm
from flax_musicvae.models import nade

Array = jax.Array
HEAD_KINDS = ("categorical", "multi_out", "groove", "nade")


@dataclasses.dataclass(frozen=True)
class Head:
  """What the output projection means: ``kind`` in HEAD_KINDS over ``depth`` output dims."""
  kind: str
  depth: int
  depths: tuple[int, ...] = ()      # multi_out parts
  nade_hidden: int = 0

  def __post_init__(self):
    if self.kind not in HEAD_KINDS:
      raise ValueError(f"unknown output head {self.kind!r}; expected one of {HEAD_KINDS}")
    if self.kind == "multi_out" and sum(self.depths) != self.depth:
      raise ValueError(f"output depths {self.depths} do not sum to output depth {self.depth}")
    if self.kind == "groove" and self.depth % 3:
      raise ValueError(f"groove output depth must be 3 * instruments, got {self.depth}")

  @property
  def proj_size(self) -> int:
    return self.depth + self.nade_hidden if self.kind == "nade" else self.depth

  @property
  def parts(self) -> tuple[int, ...]:
    return self.depths if self.kind == "multi_out" else (self.depth,)

  @property
  def bounds(self) -> list[int]:
    """Split points of the parts along the depth axis."""
    return part_bounds(self.parts)


def noise_kind(head: Head) -> str:
  """'gumbel' (categorical classes) or 'uniform' (groove hits, NADE dimensions)."""
  return "gumbel" if head.kind in ("categorical", "multi_out") else "uniform"


def noise_depth(head: Head) -> int:
  """Noise values per step: one per class, groove hit or NADE dimension."""
  return head.depth // 3 if head.kind == "groove" else head.depth


def part_bounds(depths: Sequence[int]) -> list[int]:
  """Split points of consecutive parts of the given depths along the last axis."""
  return list(itertools.accumulate(depths))[:-1]


def segments(x: Array, n: int) -> Array:
  """``[B, T, ...]`` -> ``[n, B, T / n, ...]`` (the hierarchical decoder's segments)."""
  return jnp.swapaxes(x.reshape((x.shape[0], n, x.shape[1] // n) + x.shape[2:]), 0, 1)


def unsegment(x: Array) -> Array:
  """``[n, B, L, ...]`` -> ``[B, n * L, ...]`` (inverse of :func:`segments`)."""
  x = jnp.swapaxes(x, 0, 1)
  return x.reshape((x.shape[0], x.shape[1] * x.shape[2]) + x.shape[3:])


def split_keys(key: Array | None, n: int) -> Array:
  """``n`` keys from ``key`` (zeros when there is none: the keys are then never used)."""
  return jnp.zeros((n, 2), jnp.uint32) if key is None else jax.random.split(key, n)


def choose(head: Head, nade_params: dict | None, logits: Array, noise: Array | None,
           temperature: float | Array | None) -> Array:
  """One step's sample ``[B, depth]`` from its logits and noise ``[B, noise_depth]``."""
  if head.kind in ("categorical", "multi_out"):
    bounds = head.bounds
    logit_parts = jnp.split(logits, bounds, axis=-1)
    if temperature is None:
      idx = [jnp.argmax(l, -1) for l in logit_parts]
    else:
      idx = [jnp.argmax(g + l.astype(jnp.float32) / temperature, -1)
             for l, g in zip(logit_parts, jnp.split(noise, bounds, axis=-1))]
    return jnp.concatenate([jax.nn.one_hot(i, l.shape[-1], dtype=logits.dtype)
                            for i, l in zip(idx, logit_parts)], -1)
  if head.kind == "groove":
    hits, vel, off = jnp.split(logits, 3, axis=-1)
    if temperature is None:
      hits = (hits > 0).astype(logits.dtype)
    else:
      hits = (noise < jax.nn.sigmoid(hits.astype(jnp.float32) / temperature)
              ).astype(logits.dtype)
    return jnp.concatenate([hits, jax.nn.sigmoid(vel), jnp.tanh(off)], -1)
  b_enc, b_dec = logits[..., :head.nade_hidden], logits[..., head.nade_hidden:]
  return nade.sample(nade_params, b_enc, b_dec, noise, temperature).astype(logits.dtype)


def step_noise(head: Head, key: Array, batch: int) -> Array:
  """The noise ``[B, noise_depth]`` one step draws from its key (float32)."""
  if head.kind in ("categorical", "multi_out"):   # one key per output part
    keys = jax.random.split(key, len(head.parts))
    return jnp.concatenate([jax.random.gumbel(k, (batch, d))
                            for k, d in zip(keys, head.parts)], -1)
  if head.kind == "groove":
    return jax.random.uniform(key, (batch, noise_depth(head)))
  return nade.uniform_noise(key, batch, head.depth)


class Sampler(Protocol):
  """What a step-wise decoder asks of its source of randomness."""

  def steps(self, n: int) -> Any:
    """Per-step inputs with leading axis ``n`` (scanned with the decode)."""

  def sample(self, head: Head, nade_params: dict | None, logits: Array, step: Any) -> Array:
    """One step's sample from its logits and its slice of :meth:`steps`."""

  def parts(self, depths: Sequence[int]) -> list[Sampler]:
    """One sampler per core of a split decoder (cores of the given output depths)."""

  def segments(self, n: int) -> Any:
    """Per-segment inputs with leading axis ``n`` (scanned by the hierarchical decoder)."""

  def segment(self, x: Any) -> Sampler:
    """The sampler of one segment from its slice of :meth:`segments`."""


@dataclasses.dataclass(frozen=True)
class KeySampler:
  """Draws the noise from ``key``: ``split(key, steps)`` per decode, one key per step."""
  key: Array | None
  temperature: float | None = 1.0

  def steps(self, n: int) -> Array:
    return split_keys(self.key, n)

  def sample(self, head: Head, nade_params: dict | None, logits: Array, step: Array
             ) -> Array:
    noise = None if self.temperature is None else step_noise(head, step, logits.shape[0])
    return choose(head, nade_params, logits, noise, self.temperature)

  def parts(self, depths: Sequence[int]) -> list[KeySampler]:
    return [dataclasses.replace(self, key=k) for k in split_keys(self.key, len(depths))]

  def segments(self, n: int) -> Array:
    return split_keys(self.key, n)

  def segment(self, x: Array) -> KeySampler:
    return dataclasses.replace(self, key=x)

  def noise(self, head: Head, batch: int, steps: int) -> Array:
    """The noise ``[B, steps, noise_depth]`` this sampler draws over ``steps`` steps."""
    noise = jax.vmap(lambda k: step_noise(head, k, batch))(self.steps(steps))
    return lstm.time_major(noise)


@dataclasses.dataclass(frozen=True)
class NoiseSampler:
  """Takes the noise as an input: ``noise [B, T, noise_depth]`` (see :func:`choose`)."""
  noise: Array
  temperature: float | Array | None = 1.0

  def steps(self, n: int) -> Array:
    if self.noise.shape[1] != n:
      raise ValueError(f"noise covers {self.noise.shape[1]} steps, the decode {n}")
    return lstm.time_major(self.noise)

  def sample(self, head: Head, nade_params: dict | None, logits: Array, step: Array
             ) -> Array:
    return choose(head, nade_params, logits, step, self.temperature)

  def parts(self, depths: Sequence[int]) -> list[NoiseSampler]:
    return [dataclasses.replace(self, noise=x)
            for x in jnp.split(self.noise, part_bounds(depths), axis=-1)]

  def segments(self, n: int) -> Array:
    return segments(self.noise, n)

  def segment(self, x: Array) -> NoiseSampler:
    return dataclasses.replace(self, noise=x)
