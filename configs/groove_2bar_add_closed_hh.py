"""Magenta's groovae_2bar_add_closed_hh."""

from flax_musicvae import config_lib


def get_config():
  return config_lib.groove_config("groovae_2bar_add_closed_hh", split_bars=2, add_instruments=(2,))
