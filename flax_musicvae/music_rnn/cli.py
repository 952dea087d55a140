"""``python -m flax_musicvae.generate --mode=continue``: continue a melody, beat or lead sheet.

Magenta's ``melody_rnn_generate`` / ``drums_rnn_generate`` / ``improv_rnn_generate``::

  python -m flax_musicvae.generate --mode=continue --bundle_file=lookback_rnn.mag \\
      --primer_melody="[60]" --num_steps=128 --num_outputs=3
  python -m flax_musicvae.generate --mode=continue --workdir=/tmp/drum_kit_rnn \\
      --primer_midi=beat.mid --num_steps=64 --beam_size=4 --branch_factor=2
  python -m flax_musicvae.generate --mode=continue --bundle_file=chord_pitches_improv.mag \\
      --primer_melody="[60, -2, 62]" --backing_chords="C G Am F" --steps_per_chord=16

The model comes from a ``.mag`` bundle (``--bundle_file``), a training run
(``--workdir``) or a Magenta training checkpoint (``--checkpoint_file`` + ``--config``).
``--num_steps`` is the total length in steps, primer included (Magenta's meaning).
"""

from __future__ import annotations

import os
from typing import Any

import note_seq
import numpy as np

from flax_musicvae import cli
from flax_musicvae import inference
from flax_musicvae import workdir as workdir_lib
from flax_musicvae.checkpoints import tensor_bundle
from flax_musicvae.models import music_rnn
from flax_musicvae.music_rnn import bundle as bundle_lib
from flax_musicvae.music_rnn import configs as rnn_configs
from flax_musicvae.music_rnn import encodings
from flax_musicvae.music_rnn import generator as generator_lib

#: Errors that mean a bad request (the CLI prints them and exits with status 2).
ERRORS = (generator_lib.GeneratorError, encodings.EncodingError, bundle_lib.BundleError,
          tensor_bundle.CheckpointError, KeyError, ValueError)


def layer_sizes_of(tensors: dict[str, np.ndarray]) -> tuple[int, ...]:
  """The LSTM layer sizes of a MusicRNN checkpoint (from its bias shapes)."""
  sizes = {}
  for name, value in tensors.items():
    parts = name.split("/")
    if name.endswith("basic_lstm_cell/bias") and len(parts) > 2 and parts[2].startswith("cell_"):
      sizes[int(parts[2][5:])] = value.shape[0] // 4
  if not sizes:
    raise bundle_lib.BundleError("no rnn/multi_rnn_cell/cell_*/basic_lstm_cell variables: "
                                 "not a MusicRNN checkpoint")
  return tuple(sizes[i] for i in range(len(sizes)))


def generator_from_tensors(magenta_id: str, tensors: dict[str, np.ndarray],
                           attn_length: int | None = None) -> generator_lib.MusicRNNGenerator:
  """A generator for Magenta config ``magenta_id`` with TF-named weights (any layer sizes)."""
  mc = rnn_configs.magenta_config(magenta_id)
  enc = encodings.make_encoder(mc.encoding, min_note=mc.min_note, max_note=mc.max_note)
  has_attention = any("attention_cell_wrapper" in k for k in tensors)
  if attn_length is None:
    attn_length = mc.attn_length if has_attention else 0
  spec = music_rnn.RNNSpec(enc.input_size, enc.num_classes, layer_sizes_of(tensors),
                           attn_length)
  params = music_rnn.params_from_tf(spec, tensors)
  return generator_lib.MusicRNNGenerator(spec, params, mc.encoding, mc.min_note, mc.max_note,
                                         mc.transpose_to_key,
                                         details={"id": magenta_id,
                                                  "description": mc.description})


def generator_from_bundle(path: str | os.PathLike, attn_length: int | None = None
                          ) -> generator_lib.MusicRNNGenerator:
  """Loads a Magenta ``.mag`` (e.g. lookback_rnn.mag) without TensorFlow."""
  b = bundle_lib.read_bundle(path)
  gen = generator_from_tensors(b.generator_id, b.tensors, attn_length)
  gen.details.update(bundle_description=b.bundle_description)
  return gen


def generator_from_config(config, params: Any) -> generator_lib.MusicRNNGenerator:
  """A generator for one of our MusicRNN training configs and its parameters."""
  kw = config.data.converter_kwargs
  spec = music_rnn.RNNSpec.from_config(config.model)
  return generator_lib.MusicRNNGenerator(
      spec, params, kw.encoding, kw.get("min_note", encodings.DEFAULT_MIN_NOTE),
      kw.get("max_note", encodings.DEFAULT_MAX_NOTE), kw.get("transpose_to_key", 0),
      details={"id": config.model.get("magenta_id", ""), "name": config.get("name", "")})


def generator_from_workdir(workdir: str | os.PathLike) -> generator_lib.MusicRNNGenerator:
  config, params, _ = workdir_lib.load(workdir)
  if config.model.get("architecture", "music_vae") != "music_rnn":
    raise ValueError(f"{workdir} is a MusicVAE run: --mode=continue needs a MusicRNN "
                     "(configs/basic_rnn.py, lookback_rnn, attention_rnn, drum_kit_rnn, ...)")
  return generator_from_config(config, params)


def load_generator(*, bundle_file=None, workdir=None, checkpoint_file=None, config=None
                   ) -> generator_lib.MusicRNNGenerator:
  """The model a --mode=continue command names (exactly one source)."""
  if bundle_file:
    return generator_from_bundle(bundle_file)
  if workdir:
    return generator_from_workdir(workdir)
  if checkpoint_file:
    if config is None:
      raise ValueError("--checkpoint_file needs --config (e.g. configs/lookback_rnn.py)")
    tensors = tensor_bundle.read_checkpoint(checkpoint_file)
    return generator_from_tensors(config.model.magenta_id, tensors,
                                  config.model.attn_length)
  raise ValueError("give --bundle_file, --workdir or --checkpoint_file")


def _primer(args, gen: generator_lib.MusicRNNGenerator):
  given = [x for x in ("primer_midi", "primer_melody", "primer_drums")
           if getattr(args, x, None)]
  if len(given) > 1:
    raise generator_lib.GeneratorError(f"give at most one primer, got {', '.join(given)}")
  if args.primer_midi:
    return inference.read_midi(args.primer_midi)
  text = args.primer_melody or args.primer_drums
  if text:
    kind = "drums" if args.primer_drums else "melody"
    if (kind == "drums") != (gen.kind == "drums"):
      raise generator_lib.GeneratorError(
          f"--primer_{kind} does not fit a {gen.kind} model (use --primer_"
          f"{'drums' if gen.kind == 'drums' else 'melody'})")
    qpm = args.qpm or note_seq.DEFAULT_QUARTERS_PER_MINUTE  # Magenta's default, 120
    return generator_lib.primer_list_to_sequence(generator_lib.parse_primer_list(text), kind,
                                                 qpm, gen.steps_per_quarter)
  return None


def _chords(args) -> list[str] | None:
  if args.backing_chords:
    return args.backing_chords.split()
  if args.chords:
    return [c.strip() for c in args.chords.split(",") if c.strip()]
  return None


def continue_mode(args, writer_cls) -> None:
  gen = load_generator(bundle_file=args.bundle_file, workdir=args.workdir,
                       checkpoint_file=args.checkpoint_file,
                       config=cli.load_config(args.config, args.config_overrides))
  primer = _primer(args, gen)
  if args.num_outputs < 1:
    raise generator_lib.GeneratorError("--num_outputs must be >= 1")
  temperature = args.temperature if args.temperature > 0 else 1e-6   # 0: greedy
  outputs, titles = [], []
  for i in range(args.num_outputs):
    ns, result = gen.continue_sequence(
        primer, num_steps=args.num_steps, temperature=temperature, beam_size=args.beam_size,
        branch_factor=args.branch_factor, steps_per_iteration=args.steps_per_iteration,
        chords=_chords(args), steps_per_chord=args.steps_per_chord, seed=args.seed + i)
    outputs.append(ns)
    titles.append(f"continuation {i + 1} (log-likelihood {result.log_likelihood:.1f})")
    print(f"output {i + 1}: {len(result.events)} steps, beam log-likelihood "
          f"{result.log_likelihood:.2f}")
  name = (gen.details or {}).get("id") or "music_rnn"
  writer_cls(args, name).sequences(outputs, titles)


def bundle_to_workdir(bundle_file: str | os.PathLike, workdir: str | os.PathLike,
                      data_path: str = "") -> str:
  """Imports a ``.mag`` as a run directory (config + params), e.g. to fine-tune it with
  ``main --config.train.warm_start_from=<workdir>`` or to continue from ``--workdir``."""
  b = bundle_lib.read_bundle(bundle_file)
  gen = generator_from_tensors(b.generator_id, b.tensors)
  name = {v: k for k, v in rnn_configs.CONFIG_ALIASES.items()}.get(b.generator_id,
                                                                   b.generator_id)
  config = rnn_configs.music_rnn_config(name)
  config.model.rnn_layer_sizes = gen.spec.rnn_layer_sizes
  config.model.attn_length = gen.spec.attn_length
  config.data.path = data_path
  return str(inference.save_workdir(config, gen.params, workdir))
