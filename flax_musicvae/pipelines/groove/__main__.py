"""``python -m flax_musicvae.pipelines.groove``: :func:`flax_musicvae.pipelines.groove.cli.main`."""

from flax_musicvae.pipelines.groove.cli import main

if __name__ == "__main__":
  main()
