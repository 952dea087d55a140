"""The one mapping between Flax parameter paths and Magenta's TF variable names.

Flax paths mirror the TF scopes closely; a few ordered rewrite rules cover the rest::

  encoder/cell_0_fw/cell_0/lstm_cell/kernel
      <-> encoder/cell_0/bidirectional_rnn/fw/multi_rnn_cell/cell_0/lstm_cell/kernel
  encoder/level_1/cell_0_bw/...  <-> encoder/hierarchical_level_1/cell_0/bidirectional_rnn/bw/...
  mu/kernel                      <-> encoder/mu/kernel           (and sigma)
  decoder/core/core_decoder_2/X  <-> core_decoder/core_decoder_2/decoder/X
  decoder/core/X                 <-> core_decoder/decoder/X
  decoder/core_decoder_1/X       <-> core_decoder_1/decoder/X
  decoder/X                      <-> decoder/X (multi_rnn_cell, z_to_initial_state,
                                     output_projection, nade, hierarchical_level_0)
"""

from __future__ import annotations

import re
from typing import Any

import jax
import numpy as np

from flax_musicvae.models import vae

_BIDI = r"cell_(\d+)_(fw|bw)/cell_0/lstm_cell/"
_RULES = (
    (rf"^encoder/level_(\d+)/{_BIDI}",
     r"encoder/hierarchical_level_\1/cell_\2/bidirectional_rnn/\3/multi_rnn_cell/cell_0/lstm_cell/"),
    (rf"^encoder/{_BIDI}", r"encoder/cell_\1/bidirectional_rnn/\2/multi_rnn_cell/cell_0/lstm_cell/"),
    (r"^(mu|sigma)/", r"encoder/\1/"),
    (r"^decoder/core/core_decoder_(\d+)/", r"core_decoder/core_decoder_\1/decoder/"),
    (r"^decoder/core/", r"core_decoder/decoder/"),
    (r"^decoder/core_decoder_(\d+)/", r"core_decoder_\1/decoder/"),
)
#: TF variables that are not model weights (training state, optimizer slots).
_IGNORED = re.compile(r"(^global_step$|^beta[12]_power(_\d+)?$|/Adam(_\d+)?$)")


def tf_name(flax_path: str) -> str:
  """TF variable name of a '/'-joined Flax parameter path."""
  for pattern, repl in _RULES:
    new, n = re.subn(pattern, repl, flax_path)
    if n:
      return new
  return flax_path


def flatten(params: Any) -> dict[str, Any]:
  """``{'a/b/kernel': leaf}`` of a params tree."""
  flat = jax.tree_util.tree_flatten_with_path(params)[0]
  return {"/".join(str(getattr(k, "key", k)) for k in path): leaf for path, leaf in flat}


def unflatten(flat: dict[str, Any]) -> dict:
  tree: dict = {}
  for path, leaf in flat.items():
    node = tree
    *parents, last = path.split("/")
    for p in parents:
      node = node.setdefault(p, {})
    node[last] = leaf
  return tree


def param_shapes(config) -> dict[str, tuple[int, ...]]:
  """Flax path -> shape of every parameter of ``build_model(config)`` (no compute)."""
  model = vae.build_model(config)
  batch = vae.dummy_batch(model.spec, 1)
  rngs = {k: jax.random.PRNGKey(0) for k in ("params", "dropout", "sample")}
  shapes = jax.eval_shape(lambda: model.init(rngs, batch, train=False))["params"]
  return {k: tuple(v.shape) for k, v in flatten(shapes).items()}


def params_from_tf_weights(weights: dict[str, np.ndarray], config) -> dict:
  """Flax ``params`` tree from TF-named weights (e.g. a Magenta checkpoint's variables).

  Raises ValueError listing missing, unexpected and mis-shaped variables.
  """
  expected = param_shapes(config)
  flat, missing, bad_shape = {}, [], []
  for path, shape in expected.items():
    name = tf_name(path)
    if name not in weights:
      missing.append(name)
    elif tuple(np.shape(weights[name])) != shape:
      bad_shape.append(f"{name}: checkpoint {tuple(np.shape(weights[name]))}, model {shape}")
    else:
      flat[path] = np.asarray(weights[name], np.float32)
  used = {tf_name(p) for p in expected}
  unexpected = sorted(k for k in weights if k not in used and not _IGNORED.search(k))
  if missing or unexpected or bad_shape:
    raise ValueError("TF weights do not match the model:\n"
                     f"  missing: {sorted(missing)}\n  unexpected: {unexpected}\n"
                     f"  mis-shaped: {bad_shape}")
  return unflatten(flat)
