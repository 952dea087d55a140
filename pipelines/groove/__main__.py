"""``python -m pipelines.groove``: :func:`pipelines.groove.cli.main`."""

from pipelines.groove.cli import main

if __name__ == "__main__":
  main()
