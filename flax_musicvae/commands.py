"""Console commands (``[project.scripts]`` in pyproject.toml) for the programs whose
``python -m`` entry is not a plain callable: each runs as ``python -m`` does."""

from __future__ import annotations

import importlib
import sys

from flax_musicvae import hugepages


def _as_module(name: str):
  """Module ``name``, with absl's ``--help`` made to describe it as under ``python -m``:
  absl prints ``__main__``'s docstring and the flags of the module ``sys.argv[0]`` names."""
  module = importlib.import_module(name)
  sys.modules["__main__"].__doc__ = module.__doc__
  sys.argv[0] = name
  return module


def train() -> None:
  """``flax-musicvae-train``: ``python -m flax_musicvae.main`` (train / eval)."""
  hugepages.reexec()
  # pylint: disable-next=g-import-not-at-top
  import jax
  from absl import app
  main = _as_module("flax_musicvae.main")
  jax.config.config_with_absl()
  app.run(main.main, flags_parser=main.parse_flags)


def import_checkpoint() -> None:
  """``flax-musicvae-import``: ``python -m flax_musicvae.import_checkpoint``."""
  # pylint: disable-next=g-import-not-at-top
  from absl import app
  from flax_musicvae import cli
  app.run(_as_module("flax_musicvae.import_checkpoint").main, flags_parser=cli.parse_flags)


def folk_melodies() -> None:
  """``flax-musicvae-folk``: ``python -m pipelines.folk_melodies`` (its report is
  printed and written, not the exit status)."""
  _as_module("flax_musicvae.pipelines.folk_melodies").main()
