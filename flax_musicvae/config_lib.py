"""Config schema shared by every ``configs/<name>.py`` (ml_collections ``get_config()``).

``config.model`` holds Magenta's model hparams under their Magenta names, ``config.data``
the representation and dataset, ``config.train`` optimisation and bookkeeping. Config
files start from :func:`base_config` and override only what differs, as Magenta's
``CONFIG_MAP`` entries do (reference notes §1.1, §1.5).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import pathlib
from typing import Any, Sequence

from absl import flags
import ml_collections
from ml_collections import config_flags


#: The repository's config files (``configs/<name>.py``).
CONFIGS_DIR = pathlib.Path(__file__).resolve().parents[1] / "configs"


def load(config: str | os.PathLike, overrides: Sequence[str] = ()
         ) -> ml_collections.ConfigDict:
  """``get_config()`` of a config file (``configs/groove_4bar.py``) or of a name in
  ``configs/`` (``groove_4bar``), with ``overrides`` (see ``override``): the one way code,
  tests and the command-line programs read a config file."""
  path = pathlib.Path(config)
  if path.suffix != ".py":
    path = CONFIGS_DIR / f"{config}.py"
  if not path.is_file():
    raise FileNotFoundError(f"config file {path} not found (e.g. configs/groove_4bar.py)")
  spec = importlib.util.spec_from_file_location(f"_config_{path.stem}", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return override(module.get_config(), overrides)


def override(config: ml_collections.ConfigDict, overrides: Sequence[str]
             ) -> ml_collections.ConfigDict:
  """``config`` with ``["--config.<field>=VALUE", ...]`` applied as ml_collections' config
  flags parse them (typed by the field; an unknown field is an error). ``ValueError`` names
  the overrides and the reason."""
  if not overrides:
    return config
  argv = ["config", *overrides]
  values = flags.FlagValues()
  try:
    holder = config_flags.DEFINE_config_dict("config", config, flag_values=values,
                                             sys_argv=argv)
    values(argv)
    return holder.value
  except (flags.Error, AttributeError, KeyError, TypeError, ValueError) as e:
    message = " ".join(str(e).replace("\\n", " ").replace("\\'", "'").split()).strip("'\"")
    raise ValueError(f"config override {' '.join(overrides)}: {message}") from None


def base_config() -> ml_collections.ConfigDict:
  """Magenta's default hparams (base_model + lstm_models) plus our training settings."""
  c = ml_collections.ConfigDict()
  c.name = ""

  m = c.model = ml_collections.ConfigDict()
  m.architecture = "music_vae"         # music_vae | music_rnn (Melody/Drums/Improv RNN)
  m.rnn_layer_sizes = ()               # music_rnn: the LSTM stack
  m.attn_length = 0                    # music_rnn: attention over the last N outputs
  m.residual_connections = False       # music_rnn (unused by Magenta's configs)
  m.magenta_id = ""                    # music_rnn: Magenta's generator id
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
  m.input_depth = 0                    # set from the converter by set_converter()
  m.output_depth = 0
  m.control_depth = 0

  d = c.data = ml_collections.ConfigDict()
  d.converter = ""                     # groove | melody | drums | trio | multiperf
  d.converter_kwargs = ml_collections.ConfigDict()
  d.dataset = ""                       # groove | tfds | note_sequences | folk
  d.path = ""                          # local data folder / zip / NoteSequence TFRecord
  d.tfds_name = ""
  d.cache_dir = "~/.cache/flax_musicvae"
  d.augment_transpose = 0              # +- semitones (training only)
  d.eval_fraction = 0.1                # note_sequences: share of sequences held out (by id hash)

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
  t.eval_samples = 4                   # samples + reconstructions written per eval (0: none)
  t.checkpoint_every_steps = 1000
  t.checkpoints_to_keep = 5
  t.compute_dtype = "float32"          # float32 | bfloat16 (params stay float32)
  t.seed = 0
  t.warm_start_from = ""               # another run's workdir / checkpoint: params only
  t.max_nonfinite_steps = 20          # stop after this many consecutive non-finite steps
  return c


#: converter name -> (module, class) in flax_musicvae.data.
CONVERTERS = {
    "groove": ("flax_musicvae.data.groove", "GrooveConverter"),
    "melody": ("flax_musicvae.data.melody", "OneHotMelodyConverter"),
    "drums": ("flax_musicvae.data.drums", "DrumsConverter"),
    "trio": ("flax_musicvae.data.trio", "TrioConverter"),
    "multiperf": ("flax_musicvae.data.multiperf", "MultiInstrumentPerformanceConverter"),
    "music_rnn": ("flax_musicvae.music_rnn.data", "MusicRNNConverter"),
}


def make_converter(data_cfg: ml_collections.ConfigDict):
  """Instantiates ``data_cfg.converter`` with ``data_cfg.converter_kwargs``."""
  if data_cfg.converter not in CONVERTERS:
    raise ValueError(f"no converter class for {data_cfg.converter!r}; known: "
                     f"{sorted(CONVERTERS)}")
  module, cls = CONVERTERS[data_cfg.converter]
  return getattr(importlib.import_module(module), cls)(**data_cfg.converter_kwargs.to_dict())


def set_converter(c: ml_collections.ConfigDict, converter: str, **kwargs: Any) -> None:
  """Sets the representation and the model depths it implies."""
  c.data.converter = converter
  c.data.converter_kwargs = ml_collections.ConfigDict(kwargs)
  conv = make_converter(c.data)
  c.model.input_depth = conv.input_depth
  c.model.output_depth = conv.output_depth
  c.model.control_depth = conv.control_depth


def lstm_config(name: str, *, z_size: int, enc_rnn_size: Sequence[int],
                dec_rnn_size: Sequence[int], max_seq_len: int, batch_size: int = 512,
                **model: Any) -> ml_collections.ConfigDict:
  """A CONFIG_MAP entry's model hparams on top of :func:`base_config`."""
  c = base_config()
  c.name = name
  c.model.z_size = z_size
  c.model.enc_rnn_size = tuple(enc_rnn_size)
  c.model.dec_rnn_size = tuple(dec_rnn_size)
  c.model.max_seq_len = max_seq_len
  c.train.batch_size = batch_size
  for k, v in model.items():
    if k not in c.model:
      raise KeyError(f"unknown model hparam {k!r}")
    c.model[k] = tuple(v) if isinstance(v, list) else v
  c.data.dataset = "note_sequences"
  return c


def mel_2bar_config(name: str, *, z_size: int, enc: int, dec: Sequence[int],
                    max_beta: float) -> ml_collections.ConfigDict:
  """cat-mel_2bar_{small,big}: MEL_PROGRAMS melodies, scheduled sampling, transpose +-5."""
  c = lstm_config(name, z_size=z_size, enc_rnn_size=[enc], dec_rnn_size=dec, max_seq_len=32,
                  free_bits=0, max_beta=max_beta, beta_rate=0.99999,
                  sampling_schedule="inverse_sigmoid", sampling_rate=1000)
  set_converter(c, "melody", valid_programs=tuple(range(32)), skip_polyphony=False,
                max_bars=100, slice_bars=2, steps_per_quarter=4)
  c.data.augment_transpose = 5
  return c


def drums_2bar_config(name: str, *, z_size: int, enc: int, dec: Sequence[int],
                      nade: bool = False, **converter: Any) -> ml_collections.ConfigDict:
  """cat-/nade-drums_2bar_*: free bits 48, beta 0.2, scheduled sampling."""
  c = lstm_config(name, z_size=z_size, enc_rnn_size=[enc], dec_rnn_size=dec, max_seq_len=32,
                  free_bits=48, max_beta=0.2, sampling_schedule="inverse_sigmoid",
                  sampling_rate=1000, decoder="nade" if nade else "categorical")
  set_converter(c, "drums", max_bars=100, slice_bars=2, steps_per_quarter=4, roll_input=True,
                roll_output=nade, **converter)
  return c


def mel_16bar_config(name: str, *, enc: Sequence[int], dec: Sequence[int],
                     hierarchical: bool, encoder: str = "bidirectional"
                     ) -> ml_collections.ConfigDict:
  """flat-/hierdec-/hier-mel_16bar (all MIDI programs, 16-bar windows)."""
  model = dict(decoder="hierarchical", core_decoder="categorical",
               level_lengths=(16, 16)) if hierarchical else {}
  c = lstm_config(name, z_size=512, enc_rnn_size=enc, dec_rnn_size=dec, max_seq_len=256,
                  free_bits=256, max_beta=0.2, encoder=encoder, **model)
  set_converter(c, "melody", skip_polyphony=False, max_bars=100, slice_bars=16,
                steps_per_quarter=4)
  return c


def trio_16bar_config(name: str, *, encoder: str = "bidirectional", enc: Sequence[int],
                      dec: Sequence[int], hierarchical: bool) -> ml_collections.ConfigDict:
  """flat-/hierdec-/hier-trio_16bar (melody 90, bass 90, drums 512)."""
  if hierarchical:
    model = dict(decoder="hierarchical", core_decoder="split", level_lengths=(16, 16),
                 free_bits=256, max_beta=0.2)
  else:
    model = dict(decoder="multi_out")
  c = lstm_config(name, z_size=512, enc_rnn_size=enc, dec_rnn_size=dec, max_seq_len=256,
                  batch_size=256, encoder=encoder, output_depths=(90, 90, 512), **model)
  set_converter(c, "trio", steps_per_quarter=4, slice_bars=16, gap_bars=2)
  return c


def multiperf_config(name: str, *, big: bool, chords: bool) -> ml_collections.ConfigDict:
  """hier-multiperf_vel_1bar_*: hierarchical encoder [64, 8], conductor [8, 64]."""
  c = lstm_config(name, z_size=512, enc_rnn_size=[2048 if big else 1024],
                  dec_rnn_size=[1024 if big else 512] * 3, max_seq_len=512, batch_size=256,
                  encoder="hierarchical", decoder="hierarchical", core_decoder="categorical",
                  level_lengths=(8, 64))
  kwargs = dict(num_velocity_bins=8, hop_size_bars=1, max_num_instruments=8,
                max_events_per_instrument=64)
  if chords:
    kwargs["chord_encoding"] = "triad"
  set_converter(c, "multiperf", **kwargs)
  c.data.augment_transpose = 3
  return c


GROOVE_PATH = "../shared/data/groove-v1.0.0-midionly"


def groove_config(name: str, *, split_bars: int, **converter: Any
                  ) -> ml_collections.ConfigDict:
  """groovae_*: GrooveLstmDecoder, dropout keep 0.3, Groove MIDI Dataset windows."""
  # lazy: other configs load without note_seq (1.3 s vs 13 s to import, measured at load 9)
  from flax_musicvae.data import groove  # pylint: disable=import-outside-toplevel
  c = lstm_config(name, z_size=256, enc_rnn_size=[512], dec_rnn_size=[256, 256],
                  max_seq_len=16 * split_bars, max_beta=0.2, free_bits=48,
                  dropout_keep_prob=0.3, decoder="groove")
  set_converter(c, "groove", split_bars=split_bars, steps_per_quarter=4, quarters_per_bar=4,
                max_tensors_per_notesequence=20,
                pitch_classes=groove.ROLAND_DRUM_PITCH_CLASSES,
                inference_pitch_classes=groove.REDUCED_DRUM_PITCH_CLASSES, **converter)
  c.data.dataset = "groove"
  c.data.path = GROOVE_PATH
  c.data.tfds_name = f"groove/{split_bars}bar-midionly"
  return c


def tiny(config: ml_collections.ConfigDict | str | os.PathLike, steps: int | None = None, *,
         rnn: int = 8, z: int = 4, attn: int = 8, batch_size: int = 8, **train: Any
         ) -> ml_collections.ConfigDict:
  """A copy of ``config`` (or of the config :func:`load` finds by that name) at toy widths.

  For tests and benches: the same structure, every RNN layer (MusicVAE encoders and
  decoders, the MusicRNN stack) ``rnn`` units, z ``z``, NADE hidden units and MusicRNN
  attention capped at ``rnn`` and ``attn``. With ``steps``: a run of ``steps`` steps at
  ``batch_size`` that logs every step, evaluates one batch and checkpoints only at its end
  (also when resumed with more steps) and writes no samples. ``train`` sets any other
  ``config.train`` field.
  """
  if not isinstance(config, ml_collections.ConfigDict):
    config = load(config)
  c = ml_collections.ConfigDict(config.to_dict())
  m = c.model
  m.enc_rnn_size = (rnn,) * len(m.enc_rnn_size)
  m.dec_rnn_size = (rnn,) * len(m.dec_rnn_size)
  m.rnn_layer_sizes = (rnn,) * len(m.rnn_layer_sizes)
  m.z_size = z
  m.nade_num_hidden = min(m.nade_num_hidden, rnn)
  m.attn_length = min(m.attn_length, attn)
  if steps is not None:
    at_end = 1 << 30   # the loop also logs, evaluates and checkpoints at its last step
    c.train.update(batch_size=batch_size, num_train_steps=steps, log_every_steps=1,
                   eval_every_steps=at_end, checkpoint_every_steps=at_end, eval_num_batches=1,
                   eval_samples=0)
  c.train.update(train)
  return c
