"""Console commands (``[project.scripts]`` in pyproject.toml) for the programs whose
``python -m`` entry is not a plain callable: each runs as ``python -m`` does."""

from __future__ import annotations


def train() -> None:
  """``flax-musicvae-train``: ``python -m flax_musicvae.main`` (train / eval)."""
  # pylint: disable-next=g-import-not-at-top
  import jax
  from absl import app
  from flax_musicvae import cli, main
  jax.config.config_with_absl()
  app.run(main.main, flags_parser=cli.parse_flags)


def folk_melodies() -> None:
  """``flax-musicvae-folk``: ``python -m pipelines.folk_melodies`` (its report is
  printed and written, not the exit status)."""
  from pipelines import folk_melodies as folk  # pylint: disable=g-import-not-at-top
  folk.main()
