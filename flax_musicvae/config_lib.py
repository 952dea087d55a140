"""Config schema shared by every ``configs/<name>.py`` (ml_collections ``get_config()``).

``config.model`` holds Magenta's model hparams under their Magenta names, ``config.data``
the representation and dataset, ``config.train`` optimisation and bookkeeping. Config
files start from :func:`base_config` and override only what differs, as Magenta's
``CONFIG_MAP`` entries do (reference notes §1.1, §1.5).
"""

from __future__ import annotations

import ml_collections


def base_config() -> ml_collections.ConfigDict:
  """Magenta's default hparams (base_model + lstm_models) plus our training settings."""
  c = ml_collections.ConfigDict()
  c.name = ""

  m = c.model = ml_collections.ConfigDict()
  m.encoder = "bidirectional"          # bidirectional | hierarchical
  m.decoder = "categorical"            # categorical | multi_out | split | hierarchical | groove | nade
  m.core_decoder = ""                  # for hierarchical decoders: the per-segment decoder kind
  m.level_lengths = ()                 # hierarchical encoder/decoder level lengths
  m.disable_autoregression = True      # hierarchical decoder conductor mode
  m.output_depths = ()                 # multi_out / split decoders
  m.nade_num_hidden = 128
  m.max_seq_len = 32
  m.z_size = 32
  m.free_bits = 0.0
  m.max_beta = 1.0
  m.beta_rate = 0.0
  m.enc_rnn_size = (256,)
  m.dec_rnn_size = (512,)
  m.dropout_keep_prob = 1.0
  m.sampling_schedule = "constant"     # constant | exponential | inverse_sigmoid
  m.sampling_rate = 0.0
  m.residual_encoder = False
  m.residual_decoder = False
  m.remat = False                      # rematerialise LSTM steps (memory for big models)

  d = c.data = ml_collections.ConfigDict()
  d.converter = ""                     # groove | melody | drums | trio | multiperf
  d.converter_kwargs = ml_collections.ConfigDict()
  d.dataset = ""                       # groove | tfds | note_sequences | folk
  d.path = ""                          # local data folder / zip / NoteSequence TFRecord
  d.tfds_name = ""
  d.cache_dir = "~/.cache/flax_musicvae"
  d.augment_transpose = 0              # +- semitones (training only)

  t = c.train = ml_collections.ConfigDict()
  t.batch_size = 512
  t.learning_rate = 1e-3
  t.decay_rate = 0.9999
  t.min_learning_rate = 1e-5
  t.grad_clip = 1.0
  t.clip_mode = "global_norm"
  t.grad_norm_clip_to_zero = 10000.0
  t.num_train_steps = 200_000
  t.log_every_steps = 100
  t.eval_every_steps = 1000
  t.eval_num_batches = 0               # 0: the whole validation split
  t.checkpoint_every_steps = 1000
  t.checkpoints_to_keep = 5
  t.compute_dtype = "float32"          # float32 | bfloat16 (params stay float32)
  t.seed = 0
  t.warm_start_from = ""               # another run's workdir / checkpoint: params only
  return c
