"""Magenta's nade-drums_2bar_reduced."""

from flax_musicvae import config_lib


def get_config():
  return config_lib.drums_2bar_config("nade-drums_2bar_reduced", z_size=256, enc=1024,
                                      dec=[512, 512], nade=True)
