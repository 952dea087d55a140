"""``python -m pipelines.multipart_scores``: :func:`flax_musicvae.pipelines.multipart_scores.main`."""

from flax_musicvae.pipelines.multipart_scores import main

if __name__ == "__main__":
  main()
