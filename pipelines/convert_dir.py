"""``python -m pipelines.convert_dir``: :func:`flax_musicvae.pipelines.convert_dir.main`."""

from flax_musicvae.pipelines.convert_dir import main

if __name__ == "__main__":
  main()
