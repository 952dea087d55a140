"""Magenta's groovae_2bar_humanize."""

from flax_musicvae import config_lib


def get_config():
  return config_lib.groove_config("groovae_2bar_humanize", split_bars=2, humanize=True)
