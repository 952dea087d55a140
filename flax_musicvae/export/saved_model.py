"""jax2tf -> TF SavedModel with ``encode`` / ``decode`` / ``sample`` signatures.

Parameters are ``tf.Variable``s of a ``tf.Module``; every signature has a fixed input
signature (one export per batch size: dynamic batch dimensions do not convert to LiteRT).
"""

from __future__ import annotations

import os

import jax
import numpy as np

from flax_musicvae.export import signatures
from flax_musicvae.models.vae import MusicVAE


def _tf():
  import tensorflow as tf  # optional: [export]  pylint: disable=g-import-not-at-top
  return tf


def build_module(model: MusicVAE, params, batch_size: int):
  """``tf.Module`` with the model's variables and one ``tf.function`` per signature."""
  tf = _tf()
  from jax.experimental import jax2tf  # optional: [export]  pylint: disable=g-import-not-at-top
  signatures.check_exportable(model.spec)
  module = tf.Module()
  module.params = jax.tree.map(lambda x: tf.Variable(np.asarray(x), trainable=False), params)
  specs = signatures.input_specs(model.spec, batch_size)
  for name, fn in signatures.functions(model).items():
    converted = jax2tf.convert(fn, with_gradient=False)
    tf_specs = [tf.TensorSpec(s.shape, s.dtype, name=s.name) for s in specs[name]]

    setattr(module, name, tf.function(_bind(converted, module), input_signature=tf_specs,
                                      autograph=False))
  return module


def _bind(converted, module):
  def call(*args):
    return converted(module.params, *args)
  return call


def export(model: MusicVAE, params, path: str | os.PathLike, batch_size: int) -> str:
  """Writes the SavedModel at ``path``; returns the path."""
  tf = _tf()
  module = build_module(model, params, batch_size)
  sigs = {name: getattr(module, name).get_concrete_function()
          for name in signatures.SIGNATURES}
  tf.saved_model.save(module, os.fspath(path), signatures=sigs)
  return os.fspath(path)
