"""Magenta's cat-drums_2bar_big."""

from flax_musicvae import config_lib


def get_config():
  return config_lib.drums_2bar_config("cat-drums_2bar_big", z_size=512, enc=2048,
                                      dec=[2048] * 3)
