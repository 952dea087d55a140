"""Magenta's hier-multiperf_vel_1bar_med."""

from flax_musicvae import config_lib


def get_config():
  return config_lib.multiperf_config("hier-multiperf_vel_1bar_med", big=False, chords=False)
