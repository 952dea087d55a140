"""Magenta's groovae_4bar."""

from flax_musicvae import config_lib


def get_config():
  return config_lib.groove_config("groovae_4bar", split_bars=4)
