"""SavedModel -> LiteRT flatbuffers (TFLITE_BUILTINS only) in fp32, fp16 and int8 weights."""

from __future__ import annotations

import os

from flax_musicvae.export import signatures

#: fp32: as is; fp16: float16 weights; int8: dynamic-range (int8 weights, float activations).
QUANTIZATIONS = ("fp32", "fp16", "int8")


def convert(saved_model_dir: str | os.PathLike, quantization: str = "fp32") -> bytes:
  """The ``.tflite`` bytes of every signature of ``saved_model_dir``."""
  import tensorflow as tf  # optional: [export]  pylint: disable=g-import-not-at-top
  if quantization not in QUANTIZATIONS:
    raise ValueError(f"quantization must be one of {QUANTIZATIONS}, got {quantization!r}")
  converter = tf.lite.TFLiteConverter.from_saved_model(
      os.fspath(saved_model_dir), signature_keys=list(signatures.SIGNATURES))
  converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
  converter._experimental_unfold_large_splat_constant = True  # pylint: disable=protected-access
  if quantization != "fp32":
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
  if quantization == "fp16":
    converter.target_spec.supported_types = [tf.float16]
  return converter.convert()


def write(saved_model_dir: str | os.PathLike, path: str | os.PathLike,
          quantization: str = "fp32") -> int:
  """Converts and writes ``path``; returns its size in bytes."""
  data = convert(saved_model_dir, quantization)
  with open(path, "wb") as f:
    f.write(data)
  return len(data)
