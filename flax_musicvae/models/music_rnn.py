"""Magenta's MusicRNN (``events_rnn_graph``): an LSTM stack over encoded events + a softmax.

Melody RNN, Drums RNN and Improv RNN share this graph: ``MultiRNNCell`` of
``BasicLSTMCell``s (same cell math as :mod:`flax_musicvae.models.lstm`: gates ``i, j, f, o``,
forget bias 1), each layer wrapped in ``DropoutWrapper(output_keep_prob)``; with
``attn_length > 0`` (attention_rnn, drum_kit) layer 0 is wrapped in
``AttentionCellWrapper`` (attention over the layer's last ``attn_length`` outputs); then
``fully_connected`` logits over the classes. Training loss: softmax cross entropy
averaged over all valid steps of the batch.

Parameters mirror the TF variable names (see :func:`tf_name_map`), so Magenta checkpoints
and ``.mag`` bundles load directly:

* ``cell_{l}/kernel``, ``cell_{l}/bias``: ``rnn/multi_rnn_cell/cell_{l}/basic_lstm_cell/*``
  (under ``.../attention_cell_wrapper/`` for an attention layer 0);
* attention layer 0 also ``attn_input_{kernel,bias}`` (``attention_cell_wrapper/{kernel,bias}``,
  ``[D + A, D]``: input and previous attention read-out projected back to ``D``),
  ``attn_query_{kernel,bias}`` (``attention/{kernel,bias}``, ``[2A, A]``, query from the new
  ``c`` and ``h``), ``attn_w`` (``attention/attn_w`` ``[1, 1, A, A]`` stored as ``[A, A]``),
  ``attn_v``, ``attn_output_{kernel,bias}`` (``attn_output_projection``, ``[2A, A]``);
* ``fully_connected/weights``, ``fully_connected/biases``.

Attention step (state ``c, h, attns [A], attn_states [L, A]``, all zero at the start)::

  x~ = [x, attns] W1 + b1;  (c', h') = LSTM(x~, (c, h));  q = [c', h'] W3 + b3
  s_l = sum_k v_k tanh((attn_states_l attn_w)_k + q_k);  a = softmax(s)
  attns' = sum_l a_l attn_states_l;  y = [h', attns'] W2 + b2
  attn_states' = attn_states[1:] ++ [y];  output y

A training scan projects ``x`` for all steps at once, keeps ``attn_states attn_w`` in its
carry (one product per output) and sums the matrices' gradients after the backward
recurrence (``_attention_scan``); the generation ``step`` is the plain cell.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from flax_musicvae.models import lstm

Array = jax.Array
ATTN_PREFIX = "rnn/multi_rnn_cell/cell_0/attention_cell_wrapper"


@dataclasses.dataclass(frozen=True)
class RNNSpec:
  """The hparams of a Magenta ``EventSequenceRnnConfig`` that shape the graph."""

  input_size: int
  num_classes: int
  rnn_layer_sizes: tuple[int, ...] = (128, 128)
  attn_length: int = 0
  dropout_keep_prob: float = 1.0

  # The names the shared tooling (models.dummy_batch, workdir.abstract_params) reads.
  @property
  def input_depth(self) -> int:
    return self.input_size

  @property
  def output_depth(self) -> int:
    return self.num_classes

  control_depth = 0
  max_seq_len = 1   # parameters do not depend on the length

  @classmethod
  def from_config(cls, model_cfg) -> "RNNSpec":
    if model_cfg.get("residual_connections", False):
      raise NotImplementedError("residual_connections=True (unused by Magenta's MusicRNN "
                                "configs) is not supported")
    return cls(int(model_cfg.input_depth), int(model_cfg.output_depth),
               tuple(int(s) for s in model_cfg.rnn_layer_sizes),
               int(model_cfg.attn_length), float(model_cfg.dropout_keep_prob))


def tf_name_map(spec: RNNSpec) -> dict[str, tuple[str, ...]]:
  """TF variable name -> path in our params (``attn_w`` is stored as ``[A, A]``)."""
  out = {"fully_connected/weights": ("fully_connected", "weights"),
         "fully_connected/biases": ("fully_connected", "biases")}
  for l in range(len(spec.rnn_layer_sizes)):
    if l == 0 and spec.attn_length:
      base = ATTN_PREFIX
      out.update({
          f"{base}/kernel": ("cell_0", "attn_input_kernel"),
          f"{base}/bias": ("cell_0", "attn_input_bias"),
          f"{base}/attention/kernel": ("cell_0", "attn_query_kernel"),
          f"{base}/attention/bias": ("cell_0", "attn_query_bias"),
          f"{base}/attention/attn_w": ("cell_0", "attn_w"),
          f"{base}/attention/attn_v": ("cell_0", "attn_v"),
          f"{base}/attn_output_projection/kernel": ("cell_0", "attn_output_kernel"),
          f"{base}/attn_output_projection/bias": ("cell_0", "attn_output_bias"),
      })
    else:
      base = f"rnn/multi_rnn_cell/cell_{l}"
    out[f"{base}/basic_lstm_cell/kernel"] = (f"cell_{l}", "kernel")
    out[f"{base}/basic_lstm_cell/bias"] = (f"cell_{l}", "bias")
  return out


def params_from_tf(spec: RNNSpec, tensors: dict[str, np.ndarray]) -> dict[str, Any]:
  """Our params from TF-named arrays (a checkpoint, ``weights.npz``, a ``.mag`` bundle)."""
  names = tf_name_map(spec)
  missing = sorted(set(names) - set(tensors))
  if missing:
    raise KeyError(f"checkpoint lacks {missing} (has {sorted(tensors)})")
  params: dict[str, dict[str, Any]] = {}
  for tf_name, (group, leaf) in names.items():
    value = np.asarray(tensors[tf_name], np.float32)
    if leaf == "attn_w":
      value = value.reshape(value.shape[-2:])
    params.setdefault(group, {})[leaf] = jnp.asarray(value)
  expected = jax.eval_shape(lambda: MusicRNN(spec).init(
      jax.random.PRNGKey(0), jnp.zeros((1, 1, spec.input_size)))["params"])
  for group, leaves in expected.items():
    for leaf, shape in leaves.items():
      got = params[group][leaf].shape
      if got != shape.shape:
        raise ValueError(f"{group}/{leaf}: checkpoint shape {got}, model expects "
                         f"{shape.shape} (input_size / classes / layer sizes disagree)")
  return params


def params_to_tf(spec: RNNSpec, params: dict[str, Any]) -> dict[str, np.ndarray]:
  """TF-named float32 arrays of our params (inverse of :func:`params_from_tf`)."""
  out = {}
  for tf_name, (group, leaf) in tf_name_map(spec).items():
    value = np.asarray(params[group][leaf], np.float32)
    if leaf == "attn_w":
      value = value.reshape((1, 1) + value.shape)
    out[tf_name] = value
  return out


def _dense(x: Array, kernel: Array, bias: Array) -> Array:
  return x @ kernel.astype(x.dtype) + bias.astype(x.dtype)


def _dropout(x: Array, keep_prob: float, key: Array | None) -> Array:
  if key is None or keep_prob >= 1.0:
    return x
  keep = jax.random.bernoulli(key, keep_prob, x.shape)
  return jnp.where(keep, x / keep_prob, 0.0).astype(x.dtype)


# A generation / teacher-forcing state: per layer (c, h); plus (attns, attn_states) when
# layer 0 has attention.
State = dict[str, Any]


def zero_state(params: dict[str, Any], spec: RNNSpec, batch: int,
               dtype=jnp.float32) -> State:
  layers = [params[f"cell_{l}"] for l in range(len(spec.rnn_layer_sizes))]
  state = {"lstm": lstm.zero_state(layers, batch, dtype)}
  if spec.attn_length:
    a = spec.rnn_layer_sizes[0]
    state["attns"] = jnp.zeros((batch, a), dtype)
    state["attn_states"] = jnp.zeros((batch, spec.attn_length, a), dtype)
  return state


def attention_keys(p: dict[str, Array], attn_states: Array) -> Array:
  """``attn_states @ attn_w`` (``[B, L, A]``): the part of each score that depends only on
  the remembered output, so a step computes it once per output instead of every step."""
  return attn_states @ p["attn_w"].astype(attn_states.dtype)


def attention_input(p: dict[str, Array], x: Array) -> Array:
  """The input's share of the input projection ``[x, attns] W1 + b1`` (any leading axes:
  a scan does it for all steps at once, outside the recurrence)."""
  kernel = p["attn_input_kernel"]
  return _dense(x, kernel[:x.shape[-1]], p["attn_input_bias"])


def _step_weights(p: dict[str, Array]) -> dict[str, Array]:
  """The matrices an attention step multiplies a per-step vector by (``attn_state_kernel``
  is the ``attns`` rows of ``attn_input_kernel``)."""
  a = p["attn_w"].shape[0]
  return {"attn_state_kernel": p["attn_input_kernel"][-a:], "kernel": p["kernel"],
          "attn_query_kernel": p["attn_query_kernel"], "attn_w": p["attn_w"],
          "attn_output_kernel": p["attn_output_kernel"]}


_STEP_BIASES = ("bias", "attn_query_bias", "attn_v", "attn_output_bias")


def _attention_cell(w: dict[str, Array], b: dict[str, Array], carry, x_part: Array,
                    e: dict[str, Array] | None = None):
  """One step of ``AttentionCellWrapper(BasicLSTMCell)`` with the matrices ``w``
  (:func:`_step_weights`) and the vectors ``b`` (``_STEP_BIASES``).

  ``carry`` is ``((c, h), attns, attn_states, keys)`` (``keys`` from
  :func:`attention_keys`); ``x_part`` is :func:`attention_input` of this step's input;
  ``e`` (optional, zeros) is added to each product ``u @ w[name]``, so its cotangent is the
  product's. Returns (new carry, output, the vector ``u`` each matrix multiplied).
  """
  def times(name: str, u: Array, bias: Array | None = None) -> Array:
    if e is not None:
      bias = e[name] if bias is None else bias + e[name]
    return u @ w[name].astype(u.dtype) if bias is None else _dense(u, w[name], bias)

  (c, h), attns, attn_states, keys = carry
  x = x_part + times("attn_state_kernel", attns)
  lstm_in = jnp.concatenate([x, h.astype(x.dtype)], -1)
  lstm_bias = b["bias"] if e is None else b["bias"] + e["kernel"]
  (c, h), _ = lstm.layer_step({"kernel": w["kernel"], "bias": lstm_bias}, (c, h), x)
  query_in = jnp.concatenate([c.astype(h.dtype), h], -1)
  query = times("attn_query_kernel", query_in, b["attn_query_bias"])
  scores = jnp.sum(b["attn_v"].astype(x.dtype) * jnp.tanh(keys + query[:, None, :]), -1)
  weights = jax.nn.softmax(scores, -1)
  read = jnp.sum(weights[..., None] * attn_states, 1)
  out_in = jnp.concatenate([h, read], -1)
  out = times("attn_output_kernel", out_in, b["attn_output_bias"])
  attn_states = jnp.concatenate([attn_states[:, 1:], out[:, None, :]], 1)
  keys = jnp.concatenate([keys[:, 1:], times("attn_w", out)[:, None, :]], 1)
  inputs = {"attn_state_kernel": attns, "kernel": lstm_in, "attn_query_kernel": query_in,
            "attn_output_kernel": out_in, "attn_w": out}
  return ((c, h), read, attn_states, keys), out, inputs


def attention_step(p: dict[str, Array], carry, x: Array):
  """One generation step of the attention layer 0: ``carry`` is ``((c, h), attns,
  attn_states)``, ``x`` the layer's input; returns (new carry, output)."""
  (c, h), attns, attn_states = carry
  new, out, _ = _attention_cell(_step_weights(p), {k: p[k] for k in _STEP_BIASES},
                                ((c, h), attns, attn_states, attention_keys(p, attn_states)),
                                attention_input(p, x))
  return new[:3], out


def _masked_attention_scan(w, b, carry0, x_parts, valid, es):
  """``lax.scan`` of :func:`_attention_cell` over time-major ``x_parts`` (and the per-step
  zeros ``es``, or None), the carry frozen where ``valid`` is False; returns ((final carry,
  outputs), the stacked vectors ``u``)."""
  def body(carry, inp):
    x_part, ok, e = inp
    new, out, inputs = _attention_cell(w, b, carry, x_part, e)
    new = jax.tree.map(lambda a, old: jnp.where(ok if a.ndim == 2 else ok[..., None], a, old),
                       new, carry)
    return new, (out, inputs)

  final, (outs, inputs) = jax.lax.scan(body, carry0, (x_parts, valid, es))
  return (final, outs), inputs


@jax.custom_vjp
def _attention_scan(w, b, carry0, x_parts, valid):
  """The attention layer over time: ((final carry, outputs ``[T, B, A]``)).

  Same values and gradients as autodiff of the scan, but the gradient of each matrix of
  ``w`` is one ``sum_t u_t^T dy_t`` after the backward recurrence, where autodiff would
  add a full-size outer product into an accumulator at every step (the step's cost at a
  small batch).
  """
  return _masked_attention_scan(w, b, carry0, x_parts, valid, None)[0]   # no zeros to add


def _zero_products(w: dict[str, Array], x_parts: Array) -> dict[str, Array]:
  t, batch = x_parts.shape[:2]
  return {k: jnp.zeros((t, batch, v.shape[-1]), x_parts.dtype) for k, v in w.items()}


def _attention_scan_fwd(w, b, carry0, x_parts, valid):
  result, backward, inputs = jax.vjp(
      lambda b, carry0, x_parts, es: _masked_attention_scan(w, b, carry0, x_parts, valid, es),
      b, carry0, x_parts, _zero_products(w, x_parts), has_aux=True)
  return result, (backward, inputs, w)


def _attention_scan_bwd(res, cotangent):
  backward, inputs, w = res
  d_b, d_carry0, d_x_parts, d_products = backward(cotangent)
  d_w = {k: jnp.einsum("tbi,tbo->io", inputs[k], d_products[k],
                       preferred_element_type=jnp.float32).astype(v.dtype)
         for k, v in w.items()}
  return d_w, d_b, d_carry0, d_x_parts, None


_attention_scan.defvjp(_attention_scan_fwd, _attention_scan_bwd)


def run(params: dict[str, Any], spec: RNNSpec, inputs: Array, lengths: Array | None,
        state: State | None = None, *, dropout_key: Array | None = None
        ) -> tuple[Array, State]:
  """Logits ``[B, T, classes]`` and the final state, like ``dynamic_rnn`` (frozen past
  each length; outputs there are not meaningful)."""
  batch, steps, _ = inputs.shape
  if state is None:
    state = zero_state(params, spec, batch, inputs.dtype)
  n = len(spec.rnn_layer_sizes)
  keys = [None] * n if dropout_key is None else list(jax.random.split(dropout_key, n))
  xs = inputs
  finals = []
  for l in range(n):
    p = params[f"cell_{l}"]
    if l == 0 and spec.attn_length:
      valid = lstm.step_mask(lengths, steps, batch)[..., None]          # [T, B, 1]
      carry0 = (state["lstm"][0], state["attns"], state["attn_states"],
                attention_keys(p, state["attn_states"]))
      final, out = _attention_scan(_step_weights(p), {k: p[k] for k in _STEP_BIASES},
                                   carry0, lstm.time_major(attention_input(p, xs)), valid)
      xs = lstm.time_major(out)
      finals.append(final[0])
      attn_final = final[1:3]
    else:
      xs, final = lstm.run_layer({"kernel": p["kernel"], "bias": p["bias"]}, xs, lengths,
                                 initial=state["lstm"][l])
      finals.append(final)
    xs = _dropout(xs, spec.dropout_keep_prob, keys[l])
  fc = params["fully_connected"]
  logits = _dense(xs, fc["weights"], fc["biases"])
  new_state = {"lstm": tuple(finals)}
  if spec.attn_length:
    new_state["attns"], new_state["attn_states"] = attn_final
  return logits, new_state


def step(params: dict[str, Any], spec: RNNSpec, state: State, x: Array
         ) -> tuple[State, Array]:
  """One generation step: ``x [B, input_size]`` -> (new state, logits ``[B, classes]``)."""
  new = {}
  finals = []
  for l in range(len(spec.rnn_layer_sizes)):
    p = params[f"cell_{l}"]
    if l == 0 and spec.attn_length:
      carry, x = attention_step(p, (state["lstm"][0], state["attns"], state["attn_states"]), x)
      finals.append(carry[0])
      new["attns"], new["attn_states"] = carry[1], carry[2]
    else:
      carry, x = lstm.layer_step({"kernel": p["kernel"], "bias": p["bias"]}, state["lstm"][l],
                                 x)
      finals.append(carry)
  new["lstm"] = tuple(finals)
  fc = params["fully_connected"]
  return new, _dense(x, fc["weights"], fc["biases"])


_INITS = {"glorot": nn.initializers.glorot_uniform(), "zeros": nn.initializers.zeros,
          "normal": nn.initializers.normal(0.1)}


class _Params(nn.Module):
  """A named group of variables (one TF scope): ``((name, init, shape), ...)``."""

  shapes: tuple

  @nn.compact
  def __call__(self) -> dict[str, Array]:
    return {name: self.param(name, _INITS[init], tuple(shape))
            for name, init, shape in self.shapes}


class MusicRNN(nn.Module):
  """Declares the MusicRNN variables; ``__call__`` runs the teacher-forced graph.

  Called with an array it returns logits; called with a batch dict
  (``inputs [B,T,D]``, ``outputs [B,T,C]`` one-hot labels, ``lengths``) it returns the
  training outputs that :func:`flax_musicvae.models.losses.compute_loss` reduces.
  """

  spec: RNNSpec

  def _declare(self) -> dict[str, Any]:
    sp = self.spec
    params: dict[str, Any] = {}
    size = sp.input_size
    for l, units in enumerate(sp.rnn_layer_sizes):
      shapes = []
      if l == 0 and sp.attn_length:
        shapes += [("attn_input_kernel", "glorot", (size + units, size)),
                   ("attn_input_bias", "zeros", (size,)),
                   ("attn_query_kernel", "glorot", (2 * units, units)),
                   ("attn_query_bias", "zeros", (units,)),
                   ("attn_w", "glorot", (units, units)),
                   ("attn_v", "normal", (units,)),
                   ("attn_output_kernel", "glorot", (2 * units, units)),
                   ("attn_output_bias", "zeros", (units,))]
      shapes += [("kernel", "glorot", (size + units, 4 * units)),
                 ("bias", "zeros", (4 * units,))]
      params[f"cell_{l}"] = _Params(tuple(shapes), name=f"cell_{l}")()
      size = units
    params["fully_connected"] = _Params(
        (("weights", "glorot", (size, sp.num_classes)),
         ("biases", "zeros", (sp.num_classes,))), name="fully_connected")()
    return params

  @nn.compact
  def __call__(self, batch, train: bool = False, sampling_probability=0.0):
    del sampling_probability   # MusicRNN always trains teacher-forced
    params = self._declare()
    if not isinstance(batch, dict):
      return run(params, self.spec, batch, None)[0]
    inputs = batch["inputs"]
    lengths = batch["lengths"]
    key = self.make_rng("dropout") if train and self.spec.dropout_keep_prob < 1.0 else None
    logits, _ = run(params, self.spec, inputs, lengths, dropout_key=key)
    logits = logits.astype(jnp.float32)
    mask = (jnp.arange(inputs.shape[1])[None, :] < lengths[:, None]).astype(jnp.float32)
    target = batch["outputs"].astype(jnp.float32)
    step_loss = -jnp.sum(target * jax.nn.log_softmax(logits, -1), -1)
    correct = (jnp.argmax(logits, -1) == jnp.argmax(target, -1)).astype(jnp.float32)
    return {"logits": logits, "mask": mask, "step_loss": step_loss, "step_correct": correct,
            "music_rnn": jnp.ones(())}


def compute_loss(outputs: dict[str, Array]) -> tuple[Array, dict[str, Array]]:
  """Magenta's MusicRNN loss: mean cross entropy over all valid steps of the batch.

  Every metric is a mean over the valid steps (``perplexity`` of each step's
  ``exp(cross entropy)``, as Magenta's), and ``valid_steps`` counts them, so an evaluation
  can weight batches by it as Magenta's streaming metrics do.
  """
  mask = outputs["mask"]
  valid_steps = jnp.sum(mask)
  count = jnp.maximum(valid_steps, 1.0)
  loss = jnp.sum(outputs["step_loss"] * mask) / count
  accuracy = jnp.sum(outputs["step_correct"] * mask) / count
  perplexity = jnp.sum(jnp.exp(outputs["step_loss"]) * mask) / count
  return loss, {"loss": loss, "loss_per_step": loss, "accuracy": accuracy,
                "perplexity": perplexity, "valid_steps": valid_steps}


def build(config) -> MusicRNN:
  model_cfg = config.model if "model" in config else config
  return MusicRNN(RNNSpec.from_config(model_cfg))
