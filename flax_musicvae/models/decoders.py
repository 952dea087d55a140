"""LSTM decoders: flat (categorical / multi-out / groove / NADE heads), split and hierarchical.

Each decoder is a linen module that declares the variables (TF-mirroring names) and
returns a plain object of pure functions over them, so teacher forcing (batched,
layer-by-layer scans), scheduled sampling and free-running sampling (step-wise scans
whose randomness comes from a :mod:`sampling` sampler: a key for the model, noise inputs
for export) and the hierarchical segment loop (a nested scan) share parameters.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from flax_musicvae.models import encoders
from flax_musicvae.models import lstm
from flax_musicvae.models import nade
from flax_musicvae.models import sampling

Array = jax.Array


class DenseParams(nn.Module):
  """``tf.layers.dense`` variables ``kernel [in, out]``, ``bias [out]``."""
  in_size: int
  out_size: int
  kernel_init: Any = nn.initializers.glorot_uniform()

  @nn.compact
  def __call__(self) -> tuple[Array, Array]:
    return (self.param("kernel", self.kernel_init, (self.in_size, self.out_size)),
            self.param("bias", nn.initializers.zeros, (self.out_size,)))


def dense(p: tuple[Array, Array], x: Array) -> Array:
  """``tf.layers.dense`` computed in the dtype of ``x``."""
  return lstm.affine(x, *p)


STATE_INIT = nn.initializers.normal(0.001)


@dataclasses.dataclass(frozen=True)
class DecoderSettings:
  sizes: tuple[int, ...]
  keep_prob: float = 1.0
  residual: bool = False
  remat: bool = False


@dataclasses.dataclass
class FlatDecoder:
  """Pure functions of one LSTM decoder (``BaseLstmDecoder``) bound to its variables."""
  settings: DecoderSettings
  head: sampling.Head
  params: dict

  def initial_state(self, z: Array) -> lstm.State:
    flat = jnp.tanh(dense(self.params["z_to_initial_state"], z))
    return lstm.split_state(flat, self.params["layers"])

  def project(self, h: Array) -> Array:
    return dense(self.params["output_projection"], h)

  def teacher(self, z: Array, inputs: Array, aux: Array, lengths: Array | None,
              dropout_key: Array | None) -> tuple[Array, lstm.State]:
    """Teacher-forced logits ``[B, T, proj]``; step input = concat(inputs[t], z, aux[t])
    (z's share of the input projection is computed once per sequence when it can be)."""
    s = self.settings
    xs = jnp.concatenate([inputs, aux], -1)
    out, final = lstm.run_stack(self.params["layers"], xs, lengths, keep_prob=s.keep_prob,
                                key=dropout_key, initial=self.initial_state(z),
                                remat=s.remat, residual=s.residual,
                                constant=(z, inputs.shape[-1]))
    return self.project(out), final

  def stepwise(self, z: Array, inputs: Array, aux: Array, select: Array, start: Array,
               sampler: sampling.Sampler, dropout_key: Array | None,
               end_token: int | None = None) -> dict[str, Array]:
    """Step-wise decode: at step t the input is the previous sample where ``select[:, t]``.

    ``select`` all True is free-running sampling (``inputs`` unused), a Bernoulli(p) mask
    with ``select[:, 0] = False`` is scheduled sampling; ``sampler`` draws each step's
    sample. After an end token the outputs are zero (``dynamic_decode``); ``lengths``
    counts emitted steps.
    """
    s, batch, steps = self.settings, inputs.shape[0], inputs.shape[1]
    layers, nade_p = self.params["layers"], self.params.get("nade")
    has_dropout = dropout_key is not None and s.keep_prob < 1.0

    def body(carry, xs):
      state, prev, finished = carry
      teacher_t, aux_t, select_t, sampler_t, dkey = xs
      inp = jnp.where(select_t[:, None], prev, teacher_t)
      x = jnp.concatenate([inp, z, aux_t], -1)
      state, h = lstm.stack_step(layers, state, x, s.keep_prob,
                                 dkey if has_dropout else None, s.residual)
      logits = self.project(h)
      smp = sampler.sample(self.head, nade_p, logits, sampler_t)
      live = ~finished
      new_finished = finished
      if end_token is not None:
        new_finished = finished | (jnp.argmax(smp, -1) == end_token)
      out = (jnp.where(live[:, None], logits, 0.0), jnp.where(live[:, None], smp, 0.0), live)
      return (state, smp, new_finished), out

    xs = (lstm.time_major(inputs), lstm.time_major(aux), select.T, sampler.steps(steps),
          sampling.split_keys(dropout_key, steps) if has_dropout else None)
    init = (self.initial_state(z), start, jnp.zeros((batch,), bool))
    (state, _, _), (logits, samples, live) = lstm.scan(body, init, xs, s.remat)
    return {"logits": lstm.time_major(logits), "samples": lstm.time_major(samples),
            "lengths": live.sum(0).astype(jnp.int32), "final_state": state}


@dataclasses.dataclass
class SplitDecoder:
  """``SplitMultiOutLstmDecoder``: one FlatDecoder per output part, same z and controls."""
  cores: list[FlatDecoder]
  head: sampling.Head

  def _split(self, x: Array) -> list[Array]:
    return jnp.split(x, self.head.bounds, axis=-1)

  def teacher(self, z, inputs, aux, lengths, dropout_key):
    keys = [None] * len(self.cores) if dropout_key is None else list(
        jax.random.split(dropout_key, len(self.cores)))
    outs = [c.teacher(z, x, aux, lengths, k)
            for c, x, k in zip(self.cores, self._split(inputs), keys)]
    return jnp.concatenate([o[0] for o in outs], -1), _merge_states([o[1] for o in outs])

  def stepwise(self, z, inputs, aux, select, start, sampler, dropout_key, end_token=None):
    if end_token is not None:
      raise ValueError("split decoders need a fixed length (no end token)")
    n = len(self.cores)
    dkeys = [None] * n if dropout_key is None else list(jax.random.split(dropout_key, n))
    outs = [c.stepwise(z, x, aux, select, st, sm, dk)
            for c, x, st, sm, dk in zip(self.cores, self._split(inputs), self._split(start),
                                        sampler.parts(self.head.depths), dkeys)]
    return {"logits": jnp.concatenate([o["logits"] for o in outs], -1),
            "samples": jnp.concatenate([o["samples"] for o in outs], -1),
            "lengths": outs[0]["lengths"],
            "final_state": _merge_states([o["final_state"] for o in outs])}


def _merge_states(states: list[lstm.State]) -> lstm.State:
  """Concatenates the parts' states per layer and per c/h (Magenta's ``_merge_decode_results``)."""
  return jax.tree.map(lambda *xs: jnp.concatenate(xs, -1), *states)


def flat_state(state: lstm.State) -> Array:
  return jnp.concatenate([x for pair in state for x in pair], -1)


class FlatDecoderParams(nn.Module):
  """Variables of a BaseLstmDecoder: ``z_to_initial_state``, ``multi_rnn_cell``,
  ``output_projection`` and, for NADE, ``nade``."""
  settings: DecoderSettings
  head: sampling.Head
  z_size: int
  aux_size: int

  @nn.compact
  def __call__(self) -> FlatDecoder:
    s = self.settings
    layers = lstm.LSTMStack(s.sizes, s.residual, name="multi_rnn_cell")(
        self.head.depth + self.z_size + self.aux_size)
    params = {
        "layers": layers,
        "z_to_initial_state": DenseParams(self.z_size, sum(lstm.state_sizes(layers)),
                                          STATE_INIT, name="z_to_initial_state")(),
        "output_projection": DenseParams(s.sizes[-1], self.head.proj_size,
                                         name="output_projection")(),
    }
    if self.head.kind == "nade":
      params["nade"] = nade.NadeParams(self.head.depth, self.head.nade_hidden, name="nade")()
    return FlatDecoder(s, self.head, params)


class SplitDecoderParams(nn.Module):
  """``core_decoder_{i}`` FlatDecoders with categorical heads of the given depths."""
  settings: DecoderSettings
  head: sampling.Head
  z_size: int
  aux_size: int

  @nn.compact
  def __call__(self) -> SplitDecoder:
    cores = [FlatDecoderParams(self.settings, sampling.Head("categorical", d), self.z_size,
                               self.aux_size, name=f"core_decoder_{i}")()
             for i, d in enumerate(self.head.depths)]
    return SplitDecoder(cores, self.head)


@dataclasses.dataclass
class HierarchicalDecoder:
  """``HierarchicalLstmDecoder`` with two levels: a conductor over ``level_lengths[0]``
  segments, whose output h is the core decoder's z for each segment of
  ``level_lengths[1]`` steps. ``autoregressive`` feeds the core's final state (concat z)
  back to the conductor; otherwise the conductor input is zeros ``[B, 1]``."""
  level_lengths: tuple[int, int]
  autoregressive: bool
  settings: DecoderSettings
  params: dict          # conductor layers + initial_state
  core: Any             # FlatDecoder | SplitDecoder

  @property
  def head(self) -> sampling.Head:
    return self.core.head

  def _conductor_init(self, z: Array) -> lstm.State:
    flat = jnp.tanh(dense(self.params["initial_state"], z))
    return lstm.split_state(flat, self.params["layers"])

  def conductor_embeddings(self, z: Array, dropout_key: Array | None) -> Array:
    """Non-autoregressive conductor outputs ``[B, S, H]`` (inputs are zeros)."""
    steps = self.level_lengths[0]
    zeros = jnp.zeros((z.shape[0], steps, 1), z.dtype)
    out, _ = lstm.run_stack(self.params["layers"], zeros, None,
                            keep_prob=self.settings.keep_prob, key=dropout_key,
                            initial=self._conductor_init(z), remat=self.settings.remat,
                            residual=self.settings.residual)
    return out

  def teacher(self, z, inputs, aux, lengths, dropout_key):
    if self.autoregressive:
      select = jnp.zeros(inputs.shape[:2], bool)
      res = self.stepwise(z, inputs, aux, select, inputs[:, 0], sampling.KeySampler(None, None),
                          dropout_key, teacher_forced=True, lengths=lengths)
      return res["logits"], None
    batch, (s, l) = z.shape[0], self.level_lengths
    k_cond, k_core = (None, None) if dropout_key is None else jax.random.split(dropout_key)
    emb = self.conductor_embeddings(z, k_cond).reshape(batch * s, -1)
    seg_len = None if lengths is None else encoders.segment_lengths(lengths, s, l).reshape(-1)
    logits, _ = self.core.teacher(emb, inputs.reshape(batch * s, l, -1),
                                  aux.reshape(batch * s, l, -1), seg_len, k_core)
    return logits.reshape(batch, s * l, -1), None

  def stepwise(self, z, inputs, aux, select, start, sampler, dropout_key, end_token=None, *,
               teacher_forced: bool = False, lengths: Array | None = None):
    """Segment by segment (a scan over segments); each segment starts from the previous
    segment's last sample (its last target under teacher forcing) and decodes with
    ``sampler.segment`` of its slice of ``sampler.segments``."""
    if end_token is not None:
      raise ValueError("hierarchical decoders need a fixed length (no end token)")
    batch, (s, l) = z.shape[0], self.level_lengths
    st = self.settings
    layers = self.params["layers"]
    has_dropout = dropout_key is not None
    seg_len = (jnp.full((batch, s), l, jnp.int32) if lengths is None
               else encoders.segment_lengths(lengths, s, l))
    feedback0 = jnp.zeros((batch, 1), z.dtype)
    if self.autoregressive:
      feedback0 = jnp.zeros((batch, self._core_state_size()), z.dtype)

    def body(carry, xs):
      cstate, feedback, prev = carry
      seg_in, seg_aux, seg_sel, seg_len_i, seg_sampler, dkey = xs
      x = jnp.concatenate([feedback, z], -1) if self.autoregressive else feedback
      ckey, core_dkey = jax.random.split(dkey) if has_dropout else (None, None)
      cstate, emb = lstm.stack_step(layers, cstate, x, st.keep_prob, ckey, st.residual)
      if teacher_forced:
        logits, final = self.core.teacher(emb, seg_in, seg_aux, seg_len_i, core_dkey)
        smp = seg_in
      else:
        res = self.core.stepwise(emb, seg_in, seg_aux, seg_sel, prev,
                                 sampler.segment(seg_sampler), core_dkey)
        logits, smp, final = res["logits"], res["samples"], res["final_state"]
      fb = (flat_state(final).astype(feedback.dtype) if self.autoregressive
            else jnp.zeros_like(feedback))
      return (cstate, fb, smp[:, -1]), (logits, smp)

    dropout_keys = jax.random.split(dropout_key, s) if has_dropout else None
    xs = (sampling.segments(inputs, s), sampling.segments(aux, s),
          sampling.segments(select, s), seg_len.T, sampler.segments(s), dropout_keys)
    init = (self._conductor_init(z), feedback0, start)
    _, (logits, samples) = lstm.scan(body, init, xs, False)
    return {"logits": sampling.unsegment(logits), "samples": sampling.unsegment(samples),
            "lengths": jnp.full((batch,), s * l, jnp.int32)}

  def _core_state_size(self) -> int:
    cores = self.core.cores if isinstance(self.core, SplitDecoder) else [self.core]
    return sum(sum(lstm.state_sizes(c.params["layers"])) for c in cores)


class ConductorParams(nn.Module):
  """``decoder/hierarchical_level_0``: ``cell_{l}/lstm_cell`` and ``initial_state``."""
  settings: DecoderSettings
  input_size: int
  z_size: int

  @nn.compact
  def __call__(self) -> dict:
    s, in_size, layers = self.settings, self.input_size, []
    for l, size in enumerate(s.sizes):
      project = l == 0 or size != s.sizes[l - 1]
      layers.append(lstm.LayerCell(size, s.residual, project, name=f"cell_{l}")(in_size))
      in_size = size
    init = DenseParams(self.z_size, sum(lstm.state_sizes(layers)), STATE_INIT,
                       name="initial_state")()
    return {"layers": layers, "initial_state": init}
