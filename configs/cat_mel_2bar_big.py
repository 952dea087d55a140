"""Magenta's cat-mel_2bar_big."""

from flax_musicvae import config_lib


def get_config():
  return config_lib.mel_2bar_config("cat-mel_2bar_big", z_size=512, enc=2048, dec=[2048] * 3,
                                    max_beta=0.5)
