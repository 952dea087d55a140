"""``python -m pipelines.tfds_groove``: :func:`flax_musicvae.pipelines.tfds_groove.main`."""

from flax_musicvae.pipelines.tfds_groove import main

if __name__ == "__main__":
  main()
