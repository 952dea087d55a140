"""Magenta's groovae_2bar_hits_control_tfds (hits as controls)."""

from flax_musicvae import config_lib


def get_config():
  return config_lib.groove_config("groovae_2bar_hits_control_tfds", split_bars=2,
                                 hits_as_controls=True)
