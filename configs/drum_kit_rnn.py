"""Magenta's Drums RNN ``drum_kit`` (hparams of its ``default_configs`` entry).

Train on Groove MIDI Dataset as NoteSequences:
  python -m pipelines.convert_dir --input_dir=../shared/data/groove-v1.0.0-midionly/groove \\
      --output_file=/tmp/groove_ns.tfrecord
  python -m flax_musicvae.main --config=configs/drum_kit_rnn.py --workdir=/tmp/drum_kit_rnn \\
      --config.data.path=/tmp/groove_ns.tfrecord
"""

from flax_musicvae.music_rnn import configs


def get_config():
  return configs.music_rnn_config("drum_kit_rnn")
