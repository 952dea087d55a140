"""Magenta's groovae_2bar_tap_fixed_velocity_note_dropout."""

from flax_musicvae import config_lib


def get_config():
  return config_lib.groove_config("groovae_2bar_tap_fixed_velocity_note_dropout", split_bars=2,
                                 tapify=True, fixed_velocities=True,
                                 max_note_dropout_probability=0.8)
