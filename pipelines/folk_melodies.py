"""``python -m pipelines.folk_melodies``: :func:`flax_musicvae.pipelines.folk_melodies.main`."""

from flax_musicvae.pipelines.folk_melodies import main

if __name__ == "__main__":
  main()
