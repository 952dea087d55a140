"""One export folder per batch size: SavedModel, ``.tflite`` variants and metadata."""

from __future__ import annotations

import os
import pathlib
from typing import Any, Sequence

import jax
import ml_collections

from flax_musicvae import workdir as workdir_lib
from flax_musicvae.export import metadata
from flax_musicvae.export import saved_model
from flax_musicvae.export import tflite
from flax_musicvae.models import build_model, dummy_batch
from flax_musicvae.models.vae import MusicVAE

SAVED_MODEL_DIR = "saved_model"
METADATA_FILE = "metadata.json"


def tflite_name(quantization: str) -> str:
  return f"model_{quantization}.tflite"


def init_params(model: MusicVAE, seed: int = 0):
  """Freshly initialised parameters (for tests, benchmarks and structure)."""
  key = jax.random.PRNGKey(seed)
  return model.init({"params": key, "sample": key, "dropout": key},
                    dummy_batch(model.spec, 1), train=False)["params"]


def load_workdir(workdir: str | os.PathLike) -> tuple[ml_collections.ConfigDict, Any]:
  """The config (``config.json``) and newest usable parameters of a training run."""
  config, params, _ = workdir_lib.load(workdir)
  return config, params


def export_bundle(config: ml_collections.ConfigDict, params, out_dir: str | os.PathLike,
                  batch_size: int, quantizations: Sequence[str] = tflite.QUANTIZATIONS
                  ) -> dict[str, Any]:
  """Writes ``out_dir/{saved_model, model_<q>.tflite, metadata.json}``; returns the metadata."""
  if batch_size < 1:
    raise ValueError(f"batch_size must be >= 1, got {batch_size}")
  out_dir = pathlib.Path(out_dir)
  out_dir.mkdir(parents=True, exist_ok=True)
  model = build_model(config)
  sm_dir = saved_model.export(model, params, out_dir / SAVED_MODEL_DIR, batch_size)
  files = {SAVED_MODEL_DIR: {"format": "saved_model"}}
  for q in quantizations:
    size = tflite.write(sm_dir, out_dir / tflite_name(q), q)
    files[tflite_name(q)] = {"format": "tflite", "quantization": q, "bytes": size}
  meta = metadata.build(config, model, params, batch_size, files)
  metadata.write(meta, out_dir / METADATA_FILE)
  return meta
