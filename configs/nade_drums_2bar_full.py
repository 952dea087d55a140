"""Magenta's nade-drums_2bar_full (61 drum classes)."""

from flax_musicvae import config_lib
from flax_musicvae.data import drums


def get_config():
  return config_lib.drums_2bar_config("nade-drums_2bar_full", z_size=256, enc=1024,
                                      dec=[512, 512], nade=True,
                                      pitch_classes=drums.FULL_DRUM_PITCH_CLASSES)
