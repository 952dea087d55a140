"""Console commands (``[project.scripts]`` in pyproject.toml) for the programs whose
``python -m`` entry is not a plain callable: each runs as ``python -m`` does."""

from __future__ import annotations

import sys

from flax_musicvae import hugepages


def train() -> None:
  """``flax-musicvae-train``: ``python -m flax_musicvae.main`` (train / eval)."""
  hugepages.reexec()
  # pylint: disable-next=g-import-not-at-top
  from flax_musicvae import main
  sys.exit(main.main())


def folk_melodies() -> None:
  """``flax-musicvae-folk``: ``python -m pipelines.folk_melodies`` (its report is
  printed and written, not the exit status)."""
  # pylint: disable-next=g-import-not-at-top
  from flax_musicvae.pipelines import folk_melodies as folk
  folk.main()
