"""Magenta's hierdec-mel_16bar."""

from flax_musicvae import config_lib


def get_config():
  return config_lib.mel_16bar_config("hierdec-mel_16bar", enc=[2048, 2048], dec=[1024, 1024],
                                     hierarchical=True)
