"""Loading a trained model's parts: workdir config and parameters, Magenta checkpoint
sizes, and the on-disk caches that make reloads fast (``CACHE_DIR``, the XLA cache)."""

from __future__ import annotations

import os
import pathlib
import re
from typing import Any, Sequence, Union

import jax
import ml_collections

from flax_musicvae import workdir as workdir_lib
from flax_musicvae.checkpoints import tensor_bundle


CACHE_DIR = pathlib.Path(os.environ.get("FLAX_MUSICVAE_CACHE",
                                        "~/.cache/flax_musicvae")).expanduser()
PathLike = Union[str, os.PathLike]


def enable_compilation_cache(cache_dir: PathLike | None = None) -> None:
  """Persists compiled XLA programs across processes (the CLI's warm start)."""
  jax.config.update("jax_compilation_cache_dir", str(cache_dir or CACHE_DIR / "jax"))
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)


load_config = workdir_lib.load_config


def load_workdir_params(workdir: PathLike, config) -> Any:
  """Newest usable parameters of ``workdir``, cached as .npz for fast reloads."""
  return workdir_lib.load_params(workdir, workdir_lib.abstract_params(config),
                                 CACHE_DIR / "params")[0]


def save_workdir(config, params, workdir: PathLike, step: int = 0) -> pathlib.Path:
  """Writes ``config.json`` and an orbax checkpoint (params only) in the training layout."""
  workdir = pathlib.Path(workdir).absolute()
  workdir_lib.save(workdir, config, workdir_lib.Checkpoint(step, params))
  return workdir


_SIZE_PATTERNS = {  # Magenta variable names whose shapes give the RNN widths, layer by layer
    "enc_rnn_size": re.compile(r"^encoder/(?:hierarchical_level_0/)?cell_(\d+)/"
                               r"bidirectional_rnn/fw/multi_rnn_cell/cell_0/lstm_cell/kernel$"),
    "dec_rnn_size": re.compile(r"^(?:core_decoder/(?:core_decoder_0/)?)?decoder/"
                               r"multi_rnn_cell/cell_(\d+)/lstm_cell/kernel$"),
}


def checkpoint_sizes(shapes: dict[str, Sequence[int]]) -> dict[str, Any]:
  """``z_size``, ``enc_rnn_size`` and ``dec_rnn_size`` read off a Magenta checkpoint's
  variable shapes (``{name: shape}``); the ones it has no variables for are left out."""
  sizes = {}
  if "encoder/mu/kernel" in shapes:
    sizes["z_size"] = int(shapes["encoder/mu/kernel"][1])
  for key, pattern in _SIZE_PATTERNS.items():
    layers = sorted((int(m[1]), int(shape[1]) // 4) for name, shape in shapes.items()
                    if (m := pattern.match(name)))
    if layers:
      sizes[key] = tuple(width for _, width in layers)
  return sizes


def with_checkpoint_sizes(config, checkpoint: PathLike):
  """``(config with the checkpoint's sizes, sizes found, the config's own sizes)``."""
  found = checkpoint_sizes({k: shape for k, (shape, _)
                            in tensor_bundle.list_variables(checkpoint).items()})
  given = {k: (tuple(config.model[k]) if isinstance(config.model[k], (tuple, list))
               else config.model[k]) for k in found}
  config = ml_collections.ConfigDict(config.to_dict())
  config.model.update(found)
  return config, found, given


def _one_line(message: str, shown: int = 2) -> str:
  """A multi-line mismatch listing as one line: each heading with its first items."""
  parts, items = [], []
  for line in message.splitlines()[1:]:
    if line.startswith("    "):
      items.append(line.strip())
    else:
      if items:
        parts[-1] += " " + ", ".join(items[:shown]) + (", ..." if len(items) > shown else "")
      parts.append(line.strip())
      items = []
  if items and parts:
    parts[-1] += " " + ", ".join(items[:shown]) + (", ..." if len(items) > shown else "")
  return "; ".join(parts) or message.strip()
