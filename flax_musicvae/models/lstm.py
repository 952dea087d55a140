"""Magenta's LSTMBlockCell stacks as linen parameter modules plus pure scan functions.

Modules only *declare* variables, named so that the Flax path mirrors the TF scope
(``cell_{l}/lstm_cell/{kernel,bias}``, see ``tf_names.py``). The recurrences are pure
functions of those arrays run with ``jax.lax.scan`` (optionally ``jax.checkpoint``-ed per
step), so one set of parameters serves the batched teacher-forced path, the step-wise
sampling path and nested (hierarchical) scans alike.

Cell math (reference notes §1.3): ``[i, j, f, o] = [x, h] @ kernel + bias``,
``c' = σ(f + 1) c + σ(i) tanh(j)``, ``h' = σ(o) tanh(c')``; state ``(c, h)``.

Mixed precision: the matmuls, gates and ``h`` run in the dtype of the inputs (the compute
dtype, e.g. bfloat16), while bias additions, the cell state ``c`` and the backward pass's
accumulators are kept in at least float32 (:func:`state_dtype`).
Weights may stay float32: they are cast where they are used (inside the scans, so that
their per-step gradients also add up in float32).
"""

from __future__ import annotations

import itertools
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

Array = jax.Array
LayerParams = dict[str, Array]
State = tuple[tuple[Array, Array], ...]   # ((c0, h0), (c1, h1), ...)

FORGET_BIAS = 1.0
# Time steps per loop iteration of the recurrence scans: 2 is 2-5% faster on CPU
# (bench/bench_train.py, interleaved runs), by halving the loop overhead per step.
RECURRENCE_UNROLL = 2


class LSTMBlockCell(nn.Module):
  """Declares one LSTMBlockCell: ``kernel [input + units, 4 units]`` and ``bias [4 units]``."""
  features: int

  @nn.compact
  def __call__(self, input_size: int) -> LayerParams:
    kernel = self.param("kernel", nn.initializers.glorot_uniform(),
                        (input_size + self.features, 4 * self.features))
    bias = self.param("bias", nn.initializers.zeros, (4 * self.features,))
    return {"kernel": kernel, "bias": bias}


class LayerCell(nn.Module):
  """One stacked layer: the LSTM and, in residual mode, Magenta's input projection."""
  features: int
  residual: bool = False
  project_input: bool = False

  @nn.compact
  def __call__(self, input_size: int) -> LayerParams:
    params = {}
    if self.residual and self.project_input:
      params["proj_kernel"] = self.param(
          "input_projection_kernel", nn.initializers.glorot_uniform(),
          (input_size, self.features))
      params["proj_bias"] = self.param(
          "input_projection_bias", nn.initializers.zeros, (self.features,))
      input_size = self.features
    params.update(LSTMBlockCell(self.features, name="lstm_cell")(input_size))
    return params


class LSTMStack(nn.Module):
  """``MultiRNNCell`` of LSTMBlockCells, layers named ``cell_{l}`` (TF order)."""
  sizes: Sequence[int]
  residual: bool = False

  @nn.compact
  def __call__(self, input_size: int) -> list[LayerParams]:
    layers = []
    for l, size in enumerate(self.sizes):
      project = l == 0 or size != self.sizes[l - 1]
      layers.append(LayerCell(size, self.residual, project, name=f"cell_{l}")(input_size))
      input_size = size
    return layers


def units(layer: LayerParams) -> int:
  return layer["bias"].shape[0] // 4


def state_sizes(layers: Sequence[LayerParams]) -> list[int]:
  """Flattened state sizes in ``tf.nest.flatten`` order: c0, h0, c1, h1, ..."""
  return [units(p) for p in layers for _ in (0, 1)]


def state_dtype(compute_dtype) -> jnp.dtype:
  """The dtype of the cell state ``c`` for a compute dtype: float32 at least."""
  return jnp.promote_types(compute_dtype, jnp.float32)


def split_state(flat: Array, layers: Sequence[LayerParams]) -> State:
  """Splits ``[B, sum(state sizes)]`` into ``((c0, h0), (c1, h1), ...)`` (c in state dtype)."""
  parts = jnp.split(flat, list(itertools.accumulate(state_sizes(layers)))[:-1], axis=-1)
  c_dtype = state_dtype(flat.dtype)
  return tuple((parts[2 * i].astype(c_dtype), parts[2 * i + 1]) for i in range(len(layers)))


def zero_state(layers: Sequence[LayerParams], batch: int, dtype=jnp.float32) -> State:
  return tuple((jnp.zeros((batch, units(p)), state_dtype(dtype)),
                jnp.zeros((batch, units(p)), dtype)) for p in layers)


def affine(x: Array, kernel: Array, bias: Array) -> Array:
  """``x @ kernel + bias`` in the dtype of ``x``, the bias added in the state dtype (so that
  its gradient, a sum over all rows, is summed in float32 too)."""
  acc = state_dtype(x.dtype)
  y = (x @ kernel.astype(x.dtype)).astype(acc) + bias.astype(acc)
  return y.astype(x.dtype)


def _gates_to_state(gates: Array, c: Array) -> tuple[Array, Array, tuple[Array, ...]]:
  """New ``(c, h)`` and the gate activations: c in the (wider) dtype of ``c``, h in the
  dtype of ``gates``."""
  si, tj, sf, so = _gate_activations(gates)
  c = sf * c + si * tj
  return c, (so * jnp.tanh(c)).astype(gates.dtype), (si, tj, sf, so)


def input_dropout(x: Array, keep_prob: float, key: Array | None) -> Array:
  """``DropoutWrapper(input_keep_prob)``: identity when ``key`` is None or keep_prob == 1."""
  if key is None or keep_prob >= 1.0:
    return x
  keep = jax.random.bernoulli(key, keep_prob, x.shape)
  return jnp.where(keep, x / keep_prob, 0.0).astype(x.dtype)


def layer_step(p: LayerParams, carry: tuple[Array, Array], x: Array, residual: bool = False
               ) -> tuple[tuple[Array, Array], Array]:
  """One time step of one (already dropped-out) layer; returns ``((c, h), output)``."""
  if "proj_kernel" in p:
    x = affine(x, p["proj_kernel"], p["proj_bias"])
  c, h = carry
  c, h, _ = _gates_to_state(affine(jnp.concatenate([x, h.astype(x.dtype)], -1), p["kernel"],
                                   p["bias"]), c)
  return (c, h), (h + x if residual else h)


def stack_step(layers: Sequence[LayerParams], state: State, x: Array, keep_prob: float,
               key: Array | None, residual: bool = False) -> tuple[State, Array]:
  """One step through all layers (input dropout on each layer's input)."""
  keys = [None] * len(layers) if key is None else list(jax.random.split(key, len(layers)))
  new_state = []
  for p, carry, k in zip(layers, state, keys):
    carry, x = layer_step(p, carry, input_dropout(x, keep_prob, k), residual)
    new_state.append(carry)
  return tuple(new_state), x


def scan(body: Callable, carry: Any, xs: Any, remat: bool) -> tuple[Any, Any]:
  """``lax.scan`` over axis 0 of ``xs``; ``remat`` recomputes each step in the backward pass."""
  if remat:
    body = jax.checkpoint(body, prevent_cse=False)
  return jax.lax.scan(body, carry, xs)


def time_major(x: Array) -> Array:
  return jnp.swapaxes(x, 0, 1)


def step_mask(lengths: Array | None, steps: int, batch: int) -> Array:
  """``[T, B]`` bool: step t is valid for example b (all valid when lengths is None)."""
  if lengths is None:
    return jnp.ones((steps, batch), bool)
  return jnp.arange(steps)[:, None] < lengths[None, :]


def run_layer(p: LayerParams, xs: Array, lengths: Array | None, *, keep_prob: float = 1.0,
              key: Array | None = None, initial: tuple[Array, Array] | None = None,
              remat: bool = False, residual: bool = False
              ) -> tuple[Array, tuple[Array, Array]]:
  """Runs one layer over ``xs [B, T, D]`` like ``dynamic_rnn``: see :func:`run_layers`."""
  (out, final), = run_layers([p], [xs], lengths, keep_prob=keep_prob, keys=[key],
                             initials=[initial], remat=remat, residual=residual)
  return out, final


def run_layers(ps: Sequence[LayerParams], xss: Sequence[Array], lengths: Array | None, *,
               keep_prob: float = 1.0, keys: Sequence[Array | None] | None = None,
               initials: Sequence[tuple[Array, Array] | None] | None = None,
               remat: bool = False, residual: bool = False
               ) -> list[tuple[Array, tuple[Array, Array]]]:
  """Runs independent layers of one shape side by side (e.g. an encoder's forward and
  backward LSTMs), each over its own ``xs [B, T, D]``, in one recurrence.

  Past an example's length the state is frozen and the output is zero. The input
  projections ``x @ kernel[:D]`` are computed for all steps at once outside the scan, time
  major (so their gradients need no transposes); the recurrence then multiplies only ``h``
  by the recurrent kernels, one batched matmul for all layers per step. Without ``remat``
  it has a hand-written backward pass (:func:`masked_recurrence`).
  """
  outs = _run_layers_time_major(ps, [time_major(xs) for xs in xss], lengths,
                                keep_prob=keep_prob, keys=keys, initials=initials,
                                remat=remat, residual=residual)
  return [(time_major(out), final) for out, final in outs]


def _run_layers_time_major(ps, xss, lengths, *, keep_prob, keys, initials, remat, residual,
                           constants=None):
  """:func:`run_layers` on time-major ``xs [T, B, D]``; outputs are time major too.

  ``constants[g]``, if given, is ``(a, row)``: a per-sequence input ``a [B, C]`` that layer g
  reads at every step, at input rows ``[row, row + C)`` of its kernel (as if concatenated
  into ``xs`` there). Without dropout or an input projection, its product with the kernel
  is computed once per sequence instead of once per step.
  """
  n = len(ps)
  keys = [None] * n if keys is None else keys
  initials = [None] * n if initials is None else initials
  constants = [None] * n if constants is None else constants
  steps, batch, _ = xss[0].shape
  inputs, x_proj, w_h, c0, h0 = [], [], [], [], []
  for p, xs, key, initial, const in zip(ps, xss, keys, initials, constants):
    if const is not None and ("proj_kernel" in p or (key is not None and keep_prob < 1.0)):
      a, row = const
      a = jnp.broadcast_to(a.astype(xs.dtype), (steps,) + a.shape)
      xs, const = jnp.concatenate([xs[..., :row], a, xs[..., row:]], -1), None
    xs = input_dropout(xs, keep_prob, key)
    if "proj_kernel" in p:
      xs = affine(xs, p["proj_kernel"], p["proj_bias"])
    depth = xs.shape[-1]
    inputs.append(xs)
    kernel = p["kernel"]
    if const is None:
      x_proj.append(affine(xs, kernel[:depth], p["bias"]))
    else:
      a, row = const
      end = row + a.shape[-1]
      per_sequence = affine(a.astype(state_dtype(xs.dtype)), kernel[row:end], p["bias"])
      x_proj.append(affine(xs, jnp.concatenate([kernel[:row], kernel[end:depth + end - row]]),
                           per_sequence[None]))
      depth += end - row
    w_h.append(kernel[depth:].astype(xs.dtype))
    if initial is None:
      initial = zero_state([p], batch, xs.dtype)[0]
    c0.append(initial[0].astype(state_dtype(xs.dtype)))
    h0.append(initial[1].astype(xs.dtype))
  valid = step_mask(lengths, steps, batch)[..., None]                 # [T, B, 1]
  recurrence = _remat_recurrence if remat else masked_recurrence
  outs, c, h = recurrence(tuple(x_proj), valid, jnp.stack(w_h), jnp.stack(c0), jnp.stack(h0))
  if residual:
    outs = [out + jnp.where(valid, xs, 0.0) for out, xs in zip(outs, inputs)]
  return [(out, (c[g], h[g])) for g, out in enumerate(outs)]


def _gate_activations(gates: Array) -> tuple[Array, Array, Array, Array]:
  """``sigmoid(i), tanh(j), sigmoid(f + forget bias), sigmoid(o)``."""
  i, j, f, o = jnp.split(gates, 4, axis=-1)
  return jax.nn.sigmoid(i), jnp.tanh(j), jax.nn.sigmoid(f + FORGET_BIAS), jax.nn.sigmoid(o)


def _recurrence_step(xp: tuple[Array, ...], ok: Array, c: Array, h: Array, w_h: Array):
  """One step of G layers: ``xp`` G gate inputs ``[B, 4H]``, state ``[G, B, H]``.

  Returns the new (c, h), the G outputs and the activations ``[G, B, 4H]``."""
  rec = jnp.einsum("gbh,ghk->gbk", h.astype(w_h.dtype), w_h)
  c_new, h_new, act = _gates_to_state(jnp.stack(xp) + rec, c)
  c_out, h_out = jnp.where(ok, c_new, c), jnp.where(ok, h_new, h)
  outs = tuple(jnp.where(ok, h_new[g], 0.0) for g in range(len(xp)))
  return c_out, h_out, outs, act


def _recurrence_scan(x_proj, valid, w_h, c0, h0, save_residuals: bool):
  """Forward recurrence; with ``save_residuals`` also returns per step the previous cell
  state, the gate activations and tanh of the new cell state (for the backward pass)."""
  def body(carry, inp):
    c, h = carry
    xp, ok = inp
    c_new, h_new, outs, act = _recurrence_step(xp, ok, c, h, w_h)
    res = (c, act, jnp.tanh(jnp.where(ok, c_new, c))) if save_residuals else ()
    return (c_new, h_new), (outs, res)
  (c, h), (outs, res) = jax.lax.scan(body, (c0, h0), (x_proj, valid),
                                     unroll=RECURRENCE_UNROLL)
  return outs, c, h, res


def _remat_recurrence(x_proj, valid, w_h, c0, h0):
  """:func:`masked_recurrence` differentiated by autodiff, each step recomputed."""
  def body(carry, inp):
    c, h, outs, _ = _recurrence_step(*inp, *carry, w_h)
    return (c, h), outs
  (c, h), outs = scan(body, (c0, h0), (x_proj, valid), remat=True)
  return outs, c, h


@jax.custom_vjp
def masked_recurrence(x_proj: tuple[Array, ...], valid: Array, w_h: Array, c0: Array,
                      h0: Array) -> tuple[tuple[Array, ...], Array, Array]:
  """LSTMBlockCell recurrences of G layers over time-major gate inputs (G arrays
  ``[T, B, 4H]``) with recurrent kernels ``w_h [G, H, 4H]``.

  Returns G outputs ``[T, B, H]`` (zero where ``valid [T, B, 1]`` is False) and the final
  (c, h) ``[G, B, H]``, frozen past each example's length. ``h0`` has the dtype of
  ``x_proj`` and ``w_h``, ``c0`` its :func:`state_dtype`.
  """
  outs, c, h, _ = _recurrence_scan(x_proj, valid, w_h, c0, h0, False)
  return outs, c, h


def _recurrence_fwd(x_proj, valid, w_h, c0, h0):
  outs, c, h, res = _recurrence_scan(x_proj, valid, w_h, c0, h0, True)
  return (outs, c, h), (valid, w_h, h0, outs, res)


def _recurrence_bwd(saved, cotangents):
  """Reverse scan with the cotangents of c and h accumulated in the state dtype; each
  returned cotangent has its primal's dtype.

  Residuals are the previous cell state, the four gate activations and ``tanh`` of the new
  cell state per step; the previous ``h`` of each valid step is the previous step's output
  (or ``h0``), so it is not saved. The recurrent kernels' gradients are one matmul each
  over all steps.
  """
  valid, w_h, h0, outs, (c_prev, act, tanh_c) = saved
  d_outs, d_c, d_h = cotangents
  acc = state_dtype(w_h.dtype)
  groups = len(outs)

  def body(carry, inp):
    dc, dh = carry
    dout, ok, c, (si, tj, sf, so), tc = inp
    dh_new = jnp.where(ok, jnp.stack(dout) + dh, 0.0)
    dc_new = jnp.where(ok, dc, 0.0) + dh_new * so * (1 - tc * tc)
    d_gates = jnp.concatenate([dc_new * tj * si * (1 - si), dc_new * si * (1 - tj * tj),
                               dc_new * c * sf * (1 - sf), dh_new * tc * so * (1 - so)], -1)
    d_gates = d_gates.astype(w_h.dtype)
    dh_prev = (jnp.einsum("gbk,ghk->gbh", d_gates, w_h, preferred_element_type=acc)
               + jnp.where(ok, 0.0, dh))
    dc_prev = dc_new * sf + jnp.where(ok, 0.0, dc)
    return (dc_prev, dh_prev), tuple(d_gates[g] for g in range(groups))

  (dc0, dh0), d_gates = jax.lax.scan(body, (d_c.astype(acc), d_h.astype(acc)),
                                     (d_outs, valid, c_prev, act, tanh_c), reverse=True,
                                     unroll=RECURRENCE_UNROLL)
  d_w_h = jnp.stack([
      jnp.einsum("tbh,tbk->hk", jnp.concatenate([h0[g][None], outs[g][:-1]]), d_gates[g],
                 preferred_element_type=acc) for g in range(groups)])
  return (d_gates, None, d_w_h.astype(w_h.dtype), dc0.astype(c_prev.dtype),
          dh0.astype(h0.dtype))


masked_recurrence.defvjp(_recurrence_fwd, _recurrence_bwd)


def reverse_valid(xs: Array, lengths: Array | None) -> Array:
  """``tf.reverse_sequence``: reverses the first ``length`` steps, keeps the rest."""
  steps = xs.shape[1]
  if lengths is None:
    return xs[:, ::-1]
  t = jnp.arange(steps)[None, :]
  idx = jnp.where(t < lengths[:, None], lengths[:, None] - 1 - t, t)
  return jnp.take_along_axis(xs, idx[..., None], axis=1)


def run_stack(layers: Sequence[LayerParams], xs: Array, lengths: Array | None, *,
              keep_prob: float = 1.0, key: Array | None = None, initial: State | None = None,
              remat: bool = False, residual: bool = False,
              constant: tuple[Array, int] | None = None) -> tuple[Array, State]:
  """Layer-by-layer run of a stack on a known input sequence (teacher forcing); the
  sequence stays time major between layers. ``constant``: a per-sequence input of the
  first layer (see :func:`_run_layers_time_major`)."""
  keys = [None] * len(layers) if key is None else list(jax.random.split(key, len(layers)))
  finals = []
  xs = time_major(xs)
  for l, (p, k) in enumerate(zip(layers, keys)):
    init = None if initial is None else initial[l]
    (xs, final), = _run_layers_time_major([p], [xs], lengths, keep_prob=keep_prob, keys=[k],
                                          initials=[init], remat=remat, residual=residual,
                                          constants=[constant if l == 0 else None])
    finals.append(final)
  return time_major(xs), tuple(finals)
