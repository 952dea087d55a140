"""Magenta's Improv RNN ``attention_improv`` (hparams of its ``default_configs`` entry).

Train on lead sheets (chord symbols of the NoteSequences; inferred when absent):
  python -m pipelines.folk_melodies --output_file=/tmp/folk.tfrecord
  python -m flax_musicvae.main --config=configs/attention_improv.py --workdir=/tmp/attention_improv \\
      --config.data.path=/tmp/folk.tfrecord
"""

from flax_musicvae.music_rnn import configs


def get_config():
  return configs.music_rnn_config("attention_improv")
