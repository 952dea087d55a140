"""The jobs of ``python -m flax_musicvae.generate`` once its flags are parsed: the model
the flags name (a run, a shipped model, a Magenta checkpoint or bundle) and one task per
``--mode``. The flags are in :mod:`flax_musicvae.generate`, the writing of outputs in
:mod:`flax_musicvae.generate_output`."""

from __future__ import annotations

import argparse
import pathlib
import sys

import numpy as np

from flax_musicvae import attributes
from flax_musicvae import audio_taps
from flax_musicvae import cli
from flax_musicvae import generate_output
from flax_musicvae import inference
from flax_musicvae import input_pipeline
from flax_musicvae.checkpoints import tensor_bundle
from flax_musicvae.music_rnn import cli as rnn_cli


UsageError = cli.UsageError

#: What a run reports as one ``error: ...`` line and exit status 2.
ERRORS = (UsageError, inference.InputError, audio_taps.AudioError, FileNotFoundError)


def _inputs(args, needed: int) -> list[str]:
  paths = [getattr(args, f"input_midi_{i}") for i in range(1, 5)]
  paths = [x for x in paths if x]
  if len(paths) < needed:
    raise UsageError(f"--mode={args.mode} needs {needed} input(s): --input_midi_1"
                     + (f" .. --input_midi_{needed}" if needed > 1 else ""))
  return paths


def _start_bars(args, n: int) -> list:
  """``--start_bar`` for ``n`` inputs: None each, the one value for all, or one each."""
  bars = args.start_bar
  if bars is None:
    return [None] * n
  if len(bars) not in (1, n):
    raise UsageError(f"--start_bar takes one bar for all inputs or one per input ({n}), "
                     f"got {len(bars)}")
  return bars * n if len(bars) == 1 else list(bars)


def _window(args, model, path: str, index: int = 0):
  """Input ``index`` as a NoteSequence: its window from ``--start_bar`` when given."""
  ns = inference.read_midi(path)
  start = _start_bars(args, index + 1)[index]
  if start is None:
    return ns
  inference.extract_window(ns, model.converter, start)  # checks the bar range
  return inference.cut_bars(ns, start, inference.window_bars(model.converter),
                            model.converter)


def _temperature(args) -> float | None:
  if args.temperature < 0:
    raise UsageError("--temperature must be >= 0")
  return args.temperature or None


def _controls(args, model):
  if not args.chords:
    return None
  return model.chord_controls([c.strip() for c in args.chords.split(",")])


def _sample(args, model, writer) -> None:
  if args.num_outputs < 1:
    raise UsageError("--num_outputs must be >= 1")
  z = model.sample_each(args.num_outputs, args.same_z, args.seed)
  if args.attribute_file:
    z = attributes.AttributeVector.load(args.attribute_file).apply(z, args.strength[0])
  writer.sequences(model.decode_each(z, _temperature(args), _controls(args, model),
                                     seed=args.seed),
                   [f"seed {args.seed + i}" for i in range(len(z))])


def _similar(args, model, writer) -> None:
  if args.num_outputs < 1:
    raise UsageError("--num_outputs must be >= 1")
  path = _inputs(args, 1)[0]
  seqs = model.similar(path, args.num_outputs, args.similarity, _temperature(args),
                       _controls(args, model), args.seed, _start_bars(args, 1)[0])
  writer.sequences(seqs, [f"similarity {args.similarity:g}, seed {args.seed + i}"
                          for i in range(len(seqs))])


def _write_candidates(err, model, writer) -> None:
  if getattr(err, "candidates", None) is not None:
    seqs = model.to_sequences(err.candidates.outputs)
    writer.sequences(seqs, suffix="_candidates")


def _interpolate(args, model, writer) -> None:
  paths = _inputs(args, 2)
  if len(paths) == 3:
    raise UsageError("interpolate takes 2 inputs (a path) or 4 (a grid), not 3")
  starts = _start_bars(args, len(paths))
  try:
    if len(paths) == 4:
      n = args.num_steps
      grid = model.interpolate_grid(paths, n, n, _temperature(args), args.seed, starts)
      seqs = [ns for row in grid for ns in row]
      corners = {(0, 0): "top-left", (0, n - 1): "top-right", (n - 1, 0): "bottom-left",
                 (n - 1, n - 1): "bottom-right"}
      names = dict(zip(corners, paths))
      titles = [f"row {r + 1}, col {c + 1}"
                + (f" = {corners[r, c]} {pathlib.Path(names[r, c]).name}"
                   if (r, c) in corners else "") for r in range(n) for c in range(n)]
      for (r, c), corner in corners.items():
        print(f"grid {corner}: output {r * n + c + 1} decodes {names[r, c]}")
    else:
      seqs = model.interpolate(paths[0], paths[1], args.num_steps, args.method,
                               _temperature(args), _controls(args, model), args.seed,
                               starts)
      titles = [f"step {i} ({args.method} t={i / (args.num_steps - 1):.2f})"
                for i in range(args.num_steps)]
  except inference.MultipleExtractedExamplesError as err:
    _write_candidates(err, model, writer)
    raise
  writer.sequences(seqs, titles)


def _encode(args, model, writer) -> None:
  paths = _inputs(args, 1)
  starts = _start_bars(args, len(paths))
  z, mu, sigma = model.encode(paths, args.seed, starts)
  out = writer.dir / f"{writer.prefix}_encoded.npz"
  np.savez(out, z=z, mu=mu, sigma=sigma, inputs=np.array(paths),
           start_bars=np.array([b or 0 for b in starts]),
           model=np.array(model.config.get("name", "")))
  print(f"wrote {out} (z, mu, sigma: {z.shape})")


def _decode(args, model, writer) -> None:
  if not args.input_npz:
    raise UsageError("--mode=decode needs --input_npz (an .npz written by --mode=encode)")
  try:
    with np.load(args.input_npz) as f:
      z = f[args.latent]
      names = [pathlib.Path(str(x)).name for x in f["inputs"]] if "inputs" in f else []
  except (OSError, ValueError, KeyError) as e:
    raise UsageError(f"{args.input_npz}: not an .npz from --mode=encode "
                     f"with {args.latent!r} ({e})") from e
  seqs = model.decode_each(z, _temperature(args), _controls(args, model), seed=args.seed)
  writer.sequences(seqs, [f"{args.latent} of {names[i]}" if i < len(names)
                          else f"{args.latent} {i + 1}" for i in range(len(seqs))])


def _reconstruct(args, model, writer) -> None:
  paths = _inputs(args, 1)
  starts = _start_bars(args, len(paths))
  seqs = [inference.reconstruct(model, path, _temperature(args), args.seed + i, start)
          for i, (path, start) in enumerate(zip(paths, starts))]
  writer.sequences(seqs, [f"reconstruction of {pathlib.Path(p).name}"
                          + (f" from bar {b}" if b else "") for p, b in zip(paths, starts)])


def _task(args, model, writer) -> None:
  temperature = _temperature(args)
  if args.mode == "drumify" and args.input_wav:
    source = audio_taps.wav_to_taps(args.input_wav, args.qpm or 120.0, args.tap_threshold,
                                    args.tap_offset)
    print(f"detected {len(source.notes)} taps in {args.input_wav}")
    writer.sequences([source], ["taps"], suffix="_taps")
  elif args.mode == "transfer":
    hits, groove = _inputs(args, 2)[:2]
    out = inference.transfer(model, _window(args, model, hits, 0),
                             _window(args, model, groove, 1), temperature, args.seed)
    writer.sequences([out], [f"hits of {pathlib.Path(hits).name}, groove of "
                             f"{pathlib.Path(groove).name}"])
    return
  else:
    source = _window(args, model, _inputs(args, 1)[0])
  fn = {"humanize": inference.humanize, "drumify": inference.drumify}.get(args.mode)
  if fn is not None:
    out = fn(model, source, temperature, args.seed)
  else:
    out = inference.infill(model, source, args.keep_original, temperature, args.seed)
  writer.sequences([out], ["input", args.mode], shown=[source, out])  # the change at a glance


def _attribute(args, model, writer) -> None:
  if args.attribute:
    try:
      data = input_pipeline.load_split(model.config, args.split)
      vec = attributes.compute_attribute_vector(model, data, args.attribute, seed=args.seed)
    except (ValueError, FileNotFoundError) as e:
      raise UsageError(str(e)) from e
    path = vec.save(writer.dir / f"attribute_{args.attribute}.npz")
    print(f"wrote {path}: {vec.metadata}")
    return
  if not args.attribute_file:
    raise UsageError("--mode=attribute needs --attribute=NAME (compute) or --attribute_file "
                     "with --input_midi_1 (apply)")
  vec = attributes.AttributeVector.load(args.attribute_file)
  _, mu, _ = model.encode(_inputs(args, 1)[:1], args.seed, _start_bars(args, 1))
  z = vec.apply(mu.repeat(len(args.strength), 0), args.strength)
  seqs = model.decode_each(z, _temperature(args), seed=args.seed)
  writer.sequences(seqs, [f"{vec.name} x {s:+g}" for s in args.strength])


def run(args: argparse.Namespace) -> None:
  """Loads the model the flags name and runs ``--mode`` (flag defaults already resolved)."""
  inference.enable_compilation_cache()
  if args.mode == "continue":
    if args.model:
      raise UsageError("--model selects a shipped MusicVAE model; --mode=continue takes a "
                       "MusicRNN --bundle_file, --workdir or --checkpoint_file")
    try:
      rnn_cli.continue_mode(args, generate_output.Writer)
    except rnn_cli.ERRORS as e:
      raise UsageError(str(e).strip("'\"")) from e
    return
  if args.bundle_file:
    raise UsageError("--bundle_file (a MusicRNN .mag) only works with --mode=continue")
  if args.workdir:
    model = inference.MusicVAEModel.from_workdir(args.workdir)
  elif args.model:
    model = inference.MusicVAEModel.from_pretrained(args.model)
  elif not args.config:
    raise UsageError("--checkpoint_file needs --config (the Magenta config it was trained with)")
  else:
    config = cli.load_config(args.config, args.config_overrides)
    try:
      model = inference.MusicVAEModel.from_magenta_checkpoint(config, args.checkpoint_file)
    except tensor_bundle.CheckpointError as e:
      raise UsageError(f"{args.checkpoint_file}: {e}") from e
    changed = {k: model.config.model[k] for k in ("z_size", "enc_rnn_size", "dec_rnn_size")
               if model.config.model[k] != config.model[k]}
    if changed:
      print("sizes from the checkpoint: " + ", ".join(f"{k} {v}" for k, v in changed.items()),
            file=sys.stderr)
  writer = generate_output.Writer(args, model.config.get("name", ""))
  handlers = {"sample": _sample, "similar": _similar, "interpolate": _interpolate,
              "encode": _encode, "decode": _decode, "reconstruct": _reconstruct,
              "attribute": _attribute}
  handlers.get(args.mode, _task)(args, model, writer)
