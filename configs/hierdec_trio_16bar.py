"""Magenta's hierdec-trio_16bar."""

from flax_musicvae import config_lib


def get_config():
  return config_lib.trio_16bar_config("hierdec-trio_16bar", enc=[2048, 2048], dec=[1024, 1024],
                                      hierarchical=True)
