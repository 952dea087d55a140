"""``python -m pipelines.groove``: :func:`flax_musicvae.pipelines.groove.main`."""

from flax_musicvae.pipelines.groove import main

if __name__ == "__main__":
  main()
