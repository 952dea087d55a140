"""Magenta's MusicRNN configs (``default_configs`` of melody_rnn, drums_rnn, improv_rnn).

``MAGENTA_CONFIGS[id]`` holds each generator id's encoding, note range, key transposition
and hparams; :func:`music_rnn_config` turns one into a training config for
``python -m flax_musicvae.main`` (``configs/<id>.py``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import ml_collections

from flax_musicvae import config_lib


@dataclasses.dataclass(frozen=True)
class MagentaRNNConfig:
  model: str                      # melody_rnn | drums_rnn | improv_rnn
  encoding: str                   # flax_musicvae.music_rnn.encodings.make_encoder name
  description: str
  rnn_layer_sizes: tuple[int, ...]
  clip_norm: float
  attn_length: int = 0
  dropout_keep_prob: float = 0.5
  batch_size: int = 128
  learning_rate: float = 0.001
  min_note: int = 48
  max_note: int = 84
  transpose_to_key: int | None = 0


MAGENTA_CONFIGS = {
    "basic_rnn": MagentaRNNConfig("melody_rnn", "melody_one_hot",
                                  "Melody RNN with one-hot encoding.", (128, 128), 5),
    "mono_rnn": MagentaRNNConfig("melody_rnn", "melody_one_hot",
                                 "Monophonic RNN with one-hot encoding.", (128, 128), 5,
                                 min_note=0, max_note=128, transpose_to_key=None),
    "lookback_rnn": MagentaRNNConfig("melody_rnn", "lookback",
                                     "Melody RNN with lookback encoding.", (128, 128), 5),
    "attention_rnn": MagentaRNNConfig("melody_rnn", "key_melody",
                                      "Melody RNN with lookback encoding and attention.",
                                      (128, 128), 3, attn_length=40),
    "drum_kit": MagentaRNNConfig("drums_rnn", "drum_kit",
                                 "Drums RNN with multiple drums and binary counters.",
                                 (256, 256, 256), 3, attn_length=32, transpose_to_key=None),
    "basic_improv": MagentaRNNConfig(
        "improv_rnn", "basic_improv",
        "Basic melody-given-chords RNN with one-hot triad encoding for chords.", (64, 64), 5,
        transpose_to_key=None),
    "attention_improv": MagentaRNNConfig(
        "improv_rnn", "attention_improv",
        "Melody-given-chords RNN with one-hot triad encoding for chords, attention, and "
        "binary counters.", (128, 128, 128), 3, attn_length=40, transpose_to_key=None),
    "chord_pitches_improv": MagentaRNNConfig(
        "improv_rnn", "chord_pitches_improv",
        "Melody-given-chords RNN with chord pitches encoding.", (256, 256, 256), 3,
        transpose_to_key=None),
}
#: Our config file names for ids that differ (the drums config is ``drum_kit`` in Magenta).
CONFIG_ALIASES = {"drum_kit_rnn": "drum_kit"}


def magenta_config(name: str) -> MagentaRNNConfig:
  name = CONFIG_ALIASES.get(name, name)
  if name not in MAGENTA_CONFIGS:
    raise KeyError(f"unknown MusicRNN config {name!r}; known: {sorted(MAGENTA_CONFIGS)}")
  return MAGENTA_CONFIGS[name]


def music_rnn_config(name: str, **overrides: Any) -> ml_collections.ConfigDict:
  """A ``main``-ready config: model hparams, data (NoteSequence TFRecord) and training.

  Magenta trains with Adam at a constant learning rate and clips gradients to the
  global norm ``clip_norm``; examples are whole tracks of up to 512 steps (511 inputs).
  """
  mc = magenta_config(name)
  c = config_lib.base_config()
  c.name = name
  m = c.model
  m.architecture = "music_rnn"
  m.magenta_id = CONFIG_ALIASES.get(name, name)
  m.rnn_layer_sizes = tuple(mc.rnn_layer_sizes)
  m.attn_length = mc.attn_length
  m.dropout_keep_prob = mc.dropout_keep_prob
  m.residual_connections = False
  m.max_seq_len = 511
  # MusicVAE-only settings that the shared loop reads: no KL term, teacher forcing.
  m.free_bits, m.max_beta, m.beta_rate = 0.0, 0.0, 0.0
  config_lib.set_converter(c, "music_rnn", encoding=mc.encoding, min_note=mc.min_note,
                           max_note=mc.max_note, transpose_to_key=mc.transpose_to_key)
  c.data.dataset = "note_sequences"   # data.path: a NoteSequence TFRecord (see configs/)
  t = c.train
  t.batch_size = mc.batch_size
  t.learning_rate = mc.learning_rate
  t.decay_rate = 1.0
  t.min_learning_rate = 0.0
  t.grad_clip = float(mc.clip_norm)
  t.clip_mode = "per_variable"   # tf_slim create_train_op(clip_gradient_norm=clip_norm)
  t.num_train_steps = 20_000
  for key, value in overrides.items():
    section, field = key.split(".", 1)
    c[section][field] = value
  return c
