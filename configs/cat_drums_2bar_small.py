"""Magenta's cat-drums_2bar_small."""

from flax_musicvae import config_lib


def get_config():
  return config_lib.drums_2bar_config("cat-drums_2bar_small", z_size=256, enc=512,
                                      dec=[256, 256])
