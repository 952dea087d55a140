"""Magenta's hier-trio_16bar (hierarchical encoder)."""

from flax_musicvae import config_lib


def get_config():
  return config_lib.trio_16bar_config("hier-trio_16bar", encoder="hierarchical", enc=[1024],
                                      dec=[1024, 1024], hierarchical=True)
