"""Magenta's groovae_2bar_tap_fixed_velocity."""

from flax_musicvae import config_lib


def get_config():
  return config_lib.groove_config("groovae_2bar_tap_fixed_velocity", split_bars=2, tapify=True,
                                 fixed_velocities=True)
