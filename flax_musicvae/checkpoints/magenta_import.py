"""Magenta TF1 MusicVAE/GrooVAE checkpoints <-> our Flax params.

Import reads a TensorBundle checkpoint (prefix, directory or Magenta's ``.tar``
bundle) with :mod:`tensor_bundle`, picks the variables the model for ``config``
expects (after Magenta's ``var_name_substitutions``), and converts them with the
models' TF-name mapping (:mod:`flax_musicvae.models.tf_names`). Export goes the
other way: a TF1 checkpoint with Magenta's variable names (+ ``global_step``) that
Magenta's ``TrainedModel`` restores, or a magenta.js folder.
"""

from __future__ import annotations

import os
import re
from typing import Any, Mapping, Sequence

import ml_collections
import numpy as np

from flax_musicvae import config_lib
from flax_musicvae.checkpoints import magentajs
from flax_musicvae.checkpoints import tensor_bundle
from flax_musicvae.models import tf_names

# Training-only variables of self-trained Magenta checkpoints: never model weights.
_TRAINING_STATE = re.compile(
    r"(^|/)(global_step|beta[12]_power(_\d+)?)$|/(Adam(_\d+)?|ExponentialMovingAverage)$")

Substitutions = Sequence[tuple[str, str]]


class CheckpointMismatchError(ValueError):
  """The checkpoint's variables do not fit the model built from the config."""


def substitute(name: str, substitutions: Substitutions) -> str:
  """Magenta's ``var_name_substitutions``: ``re.sub`` each pair in order on a model name."""
  for pattern, replacement in substitutions:
    name = re.sub(pattern, replacement, name)
  return name


def _shape(shape: Sequence[int]) -> str:
  return "[" + ", ".join(str(d) for d in shape) + "]"


def match_variables(available: Mapping[str, Sequence[int]],
                    expected: Mapping[str, Sequence[int]],
                    substitutions: Substitutions = (),
                    what: str = "the model") -> dict[str, str]:
  """Returns ``{model TF name: checkpoint key}`` for every expected variable.

  ``available`` and ``expected`` map names to shapes. As in Magenta's
  ``TrainedModel``, each model variable name rewritten by ``substitutions`` is the
  checkpoint key looked up. Optimizer slots, ``beta*_power`` and ``global_step``
  are ignored. Raises :class:`CheckpointMismatchError` listing missing, unexpected
  and mis-shaped variables.
  """
  keys, missing, misshaped = {}, [], []
  for name in sorted(expected):
    key = substitute(name, substitutions)
    if key not in available:
      missing.append(name if key == name else f"{name} (as {key})")
      continue
    keys[name] = key
    got, want = tuple(available[key]), tuple(expected[name])
    if got != want:
      misshaped.append(f"{key}: checkpoint {_shape(got)}, model {_shape(want)}")
  used = set(keys.values())
  unexpected = sorted(k for k in available if k not in used and not _TRAINING_STATE.search(k))
  if missing or misshaped or unexpected:
    lines = [f"checkpoint variables do not match {what}:"]
    for label, items in (("missing", missing), ("unexpected", unexpected),
                         ("wrong shape", misshaped)):
      if items:
        lines.append(f"  {label} ({len(items)}):")
        lines += [f"    {item}" for item in items]
    raise CheckpointMismatchError("\n".join(lines))
  return keys


def expected_tf_shapes(config: ml_collections.ConfigDict) -> dict[str, tuple[int, ...]]:
  """Magenta variable name -> shape of every parameter of the model for ``config``."""
  return {tf_names.tf_name(p): s for p, s in tf_names.param_shapes(config).items()}


def import_params(checkpoint: str | os.PathLike, config: ml_collections.ConfigDict,
                  var_name_substitutions: Substitutions = ()) -> tuple[Any, int]:
  """(Flax params, global_step) from a Magenta checkpoint (prefix, directory or ``.tar``)."""
  with tensor_bundle.open_checkpoint(checkpoint) as reader:
    available = {k: shape for k, (shape, _) in reader.variables().items()}
    keys = match_variables(available, expected_tf_shapes(config), var_name_substitutions,
                           what=f"config {config.get('name') or '(unnamed)'}")
    weights = {name: reader.read(key) for name, key in keys.items()}
    step = int(reader.read("global_step")) if "global_step" in available else 0
  return tf_names.params_from_tf_weights(weights, config), step


def tf_weights(params: Any) -> dict[str, np.ndarray]:
  """Our params as ``{Magenta variable name: array}``."""
  return {tf_names.tf_name(p): np.asarray(v) for p, v in tf_names.flatten(params).items()}


def export_tf_checkpoint(params: Any, prefix: str | os.PathLike, global_step: int = 0) -> str:
  """A TF1 checkpoint with Magenta's names (+ ``global_step``) that ``TrainedModel`` loads.

  Returns the checkpoint prefix; a ``checkpoint`` state file is written next to it.
  """
  weights = tf_weights(params)
  weights["global_step"] = np.array(global_step, np.int64)
  return tensor_bundle.write_checkpoint(prefix, weights)


def export_magentajs(params: Any, config: ml_collections.ConfigDict,
                     folder: str | os.PathLike) -> None:
  """A magenta.js (@magenta/music) MusicVAE checkpoint folder for our params."""
  spec = magentajs.spec_for(config_lib.make_converter(config.data), config.model)
  magentajs.write_folder(folder, tf_weights(params), spec)
