"""Magenta's cat-mel_2bar_med_chords (triad chord controls, transpose +-3)."""

from flax_musicvae import config_lib


def get_config():
  c = config_lib.lstm_config("cat-mel_2bar_med_chords", z_size=256, enc_rnn_size=[1024],
                             dec_rnn_size=[512] * 3, max_seq_len=32)
  config_lib.set_converter(c, "melody", max_bars=100, slice_bars=2, steps_per_quarter=4,
                           chord_encoding="triad")
  c.data.augment_transpose = 3
  return c
