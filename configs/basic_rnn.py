"""Magenta's Melody RNN ``basic_rnn`` (hparams of its ``default_configs`` entry).

Train on melodies, e.g. the music21 folk corpus:
  python -m pipelines.folk_melodies --output_file=/tmp/folk.tfrecord
  python -m flax_musicvae.main --config=configs/basic_rnn.py --workdir=/tmp/basic_rnn \\
      --config.data.path=/tmp/folk.tfrecord
"""

from flax_musicvae.music_rnn import configs


def get_config():
  return configs.music_rnn_config("basic_rnn")
