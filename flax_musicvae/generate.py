r"""Generates music with a trained MusicVAE / GrooVAE (Magenta's music_vae_generate).

  python -m flax_musicvae.generate --workdir=/tmp/groove_4bar --mode=sample --num_outputs=3
  python -m flax_musicvae.generate --mode=sample      (the shipped groove_4bar model)
  python -m flax_musicvae.generate --mode=humanize --input_midi_1=q.mid   (shipped humanize)
  python -m flax_musicvae.generate --config=configs/groove_4bar.py \
      --checkpoint_file=groovae_4bar.tar --mode=sample
  python -m flax_musicvae.generate --workdir=/tmp/groove_4bar --mode=interpolate \
      --input_midi_1=a.mid --input_midi_2=b.mid --start_bar 1 9 --num_steps=7
  flax-musicvae-generate --mode=reconstruct --input_midi_1=long_groove.mid   (every window)
  flax-musicvae-generate --mode=encode --input_midi_1=a.mid --start_bar=5
  flax-musicvae-generate --mode=decode --input_npz=/tmp/flax_musicvae/generated/<...>.npz
  python -m flax_musicvae.generate --workdir=/tmp/humanize --mode=humanize --input_midi_1=q.mid
  python -m flax_musicvae.generate --workdir=/tmp/tap2drum --mode=drumify --input_wav=taps.wav \
      --qpm=100

Modes:
  sample       decode z ~ N(0, I) (--chords for chord models, --attribute_file to shift z)
  similar      variations of --input_midi_1: z = s mu + (1 - s) eps, s = --similarity
  interpolate  decode --num_steps points (ends included) from --input_midi_1 to
               --input_midi_2 (--method slerp|lerp), or a --num_steps x --num_steps grid
               between four corners: --input_midi_1 top-left, --input_midi_2 top-right,
               --input_midi_3 bottom-left, --input_midi_4 bottom-right
  encode       write z, mu, sigma of the inputs (one window each) to an .npz file
  decode       decode the mu (or --latent=z) rows of an .npz written by encode (--input_npz)
  reconstruct  encode -> decode each input: every window of the model's length, stitched
               at the input's tempo (or only the one from --start_bar)
  humanize     quantized drums -> performance (groove_2bar_humanize models)
  drumify      any rhythm (MIDI, or a WAV of tapping) -> drum groove (tap models)
  infill       add or replace closed hi-hats (groove_2bar_add_closed_hh models)
  transfer     hits of --input_midi_1 with the groove of --input_midi_2 (hits-control models)
  attribute    --attribute=NAME: compute an attribute vector over a data split and save it;
               --attribute_file=F --input_midi_1=X: decode X shifted by each --strength
  continue     MusicRNN (Melody/Drums/Improv RNN, from --workdir, a Magenta --bundle_file
               .mag or --checkpoint_file + --config): continue --primer_midi, or a list
               --primer_melody="[60, -2, 62]" / --primer_drums="[(36, 42), (), (42,)]", to
               --num_steps steps in all (default 128), --temperature (default 1.0),
               --beam_size / --branch_factor / --steps_per_iteration, Improv RNN chords
               --backing_chords="C G Am F" (or --chords=C,G,Am,F) every --steps_per_chord
Windows: a model reads windows of a few bars (groove_4bar 4, the 2-bar models 2) of 16
steps per bar (any meter with 16 sixteenths a bar: 4/4, 2/2; not 3/4 or 6/8). An input MIDI
longer than one window needs --start_bar=N in similar, interpolate, encode and attribute
(bars numbered from 1; one for all inputs or one per input); without it the error lists
the windows. reconstruct and the groove tasks take inputs of any length (cut into model
windows and joined), or with --start_bar the one window.
Seeds: output i uses seed --seed + i, so --seed=S+i --num_outputs=1 re-makes output i.
Outputs: MIDI files (--qpm; default the input's tempo for tasks and reconstruct, 120 qpm
otherwise), a PNG piano roll / drum grid (one row per output), and with --wav WAVs
(FluidSynth and a GM soundfont when installed, else a built-in synthesizer: no system
packages needed). User errors print "error: ..." and exit with status 2.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import pathlib
import sys
import types
import warnings

MODES = ("sample", "similar", "interpolate", "encode", "decode", "reconstruct", "humanize",
         "drumify", "infill", "transfer", "attribute", "continue")
#: The shipped model a mode uses when no --workdir / --model / --checkpoint_file is given.
DEFAULT_MODELS = {"sample": "groove_4bar", "similar": "groove_4bar",
                  "interpolate": "groove_4bar", "encode": "groove_4bar",
                  "decode": "groove_4bar", "reconstruct": "groove_4bar",
                  "attribute": "groove_4bar",
                  "humanize": "groove_2bar_humanize", "drumify": "groove_2bar_tap_fixed_velocity",
                  "infill": "groove_2bar_add_closed_hh"}


def build_parser() -> argparse.ArgumentParser:
  from flax_musicvae import attributes  # pylint: disable=g-import-not-at-top
  p = argparse.ArgumentParser(
      prog="python -m flax_musicvae.generate", description=__doc__,
      formatter_class=argparse.RawDescriptionHelpFormatter,
      epilog="attributes (--attribute): " + ", ".join(attributes.ATTRIBUTES) + "\n"
             "grid corners (interpolate, 4 inputs): --input_midi_1 top-left, "
             "--input_midi_2 top-right,\n  --input_midi_3 bottom-left, --input_midi_4 "
             "bottom-right\n"
             "config overrides (--checkpoint_file): --config.model.z_size=256 etc. "
             "(sizes are read\n  off the checkpoint's shapes)")
  source = p.add_mutually_exclusive_group()
  source.add_argument("--workdir", help="training run directory (config.json + checkpoints/)")
  source.add_argument("--model", help="a shipped model by name (python -m "
                                      "flax_musicvae.pretrained); with no --workdir, --model, "
                                      "--checkpoint_file or --bundle_file each mode uses its "
                                      "shipped model: " + ", ".join(
                                          f"{m} {n}" for m, n in DEFAULT_MODELS.items()))
  source.add_argument("--checkpoint_file",
                      help="an original Magenta checkpoint (prefix, directory or .tar); "
                           "needs --config")
  source.add_argument("--bundle_file", help="continue mode: a Magenta generator bundle (.mag)")
  p.add_argument("--config", help="config (file or name in configs/) for --checkpoint_file, "
                                  "e.g. configs/groove_4bar.py; --config.<field>=VALUE "
                                  "overrides a field")
  p.add_argument("--mode", required=True, choices=MODES)
  p.add_argument("--output_dir", default="/tmp/flax_musicvae/generated",
                 help="where outputs go (default: %(default)s)")
  p.add_argument("--num_outputs", type=int, default=5,
                 help="outputs of sample and similar (default: %(default)s)")
  p.add_argument("--temperature", type=float, default=None,
                 help="sampling temperature; 0 decodes greedily (default: 0.5, continue 1.0)")
  p.add_argument("--seed", type=int, default=0,
                 help="output i uses seed + i: the same seed re-makes the same files, and "
                      "--seed=S+i --num_outputs=1 re-makes output i alone")
  p.add_argument("--same_z", action="store_true", help="one z for every sample")
  for i in range(1, 5):
    p.add_argument(f"--input_midi_{i}", help="input MIDI file")
  p.add_argument("--start_bar", type=int, nargs="+", default=None, metavar="N",
                 help="first bar (from 1) of the model window to read from each input MIDI: "
                      "one number for all inputs or one per input; needed when an input "
                      "holds several windows (the error lists them)")
  p.add_argument("--input_wav", help="drumify: a WAV recording of tapping instead of MIDI")
  p.add_argument("--tap_threshold", type=float, default=0.1,
                 help="--input_wav: onset threshold in [0, 1); lower finds softer taps")
  p.add_argument("--tap_offset", type=float, default=0.0,
                 help="--input_wav: seconds taken off every tap (lead-in or latency)")
  p.add_argument("--input_npz", help="decode: an .npz written by --mode=encode")
  p.add_argument("--latent", choices=("mu", "z"), default="mu",
                 help="decode: decode the posterior means (mu, as reconstruct) or the "
                      "sampled z of the .npz (default: %(default)s)")
  p.add_argument("--similarity", type=float, default=0.8,
                 help="similar: s in [0, 1], 1 = the input's mu (default: %(default)s)")
  p.add_argument("--qpm", type=float, default=None,
                 help="tempo of the output MIDI/WAV (default: the input's for reconstruct "
                      "and the tasks, 120 otherwise); drumify --input_wav: also the tempo "
                      "of the taps (default 120)")
  p.add_argument("--num_steps", type=int, default=None,
                 help="interpolate: outputs on the path, both ends included (default 5), or "
                      "the grid's rows and columns with 4 inputs; continue: total steps, "
                      "primer included (default 128)")
  p.add_argument("--method", choices=("slerp", "lerp"), default="slerp",
                 help="interpolation method (Magenta: slerp, magenta.js: lerp)")
  p.add_argument("--keep_original", action="store_true",
                 help="infill: keep the input's own hi-hats (add instead of replace)")
  p.add_argument("--chords", help="chord models: comma-separated chords, e.g. C,G,Am,F")
  p.add_argument("--attribute", help="attribute mode: name of the attribute to compute")
  p.add_argument("--split", default="validation", help="data split for --attribute")
  p.add_argument("--attribute_file", help="a saved attribute vector (.npz)")
  p.add_argument("--strength", type=float, nargs="+", default=[1.0],
                 help="attribute vector multiples (attribute mode: one output each)")
  p.add_argument("--png", action=argparse.BooleanOptionalAction, default=True,
                 help="write a piano-roll / drum-grid picture")
  p.add_argument("--chord_voicing", action="store_true",
                 help="chord models: also play the chords (a pad instrument) in the MIDI; "
                      "the chord symbols are written as MIDI text events either way")
  p.add_argument("--wav", action="store_true",
                 help="also write WAVs: FluidSynth + a GM soundfont when installed, else the "
                      "built-in synthesizer")
  rnn = p.add_argument_group("continue mode (MusicRNN)")
  rnn.add_argument("--primer_midi", help="MIDI file to continue")
  rnn.add_argument("--primer_melody", help='melody events, e.g. "[60, -2, 60, -2, 67]" '
                                           "(-2 hold, -1 note off)")
  rnn.add_argument("--primer_drums", help='drum pitches per step, e.g. "[(36, 42), (), (42,)]"')
  rnn.add_argument("--beam_size", type=int, default=1)
  rnn.add_argument("--branch_factor", type=int, default=1)
  rnn.add_argument("--steps_per_iteration", type=int, default=1)
  rnn.add_argument("--backing_chords", help='Improv RNN: "C G Am F" (space-separated)')
  rnn.add_argument("--steps_per_chord", type=int, default=16)
  return p


def defer_note_seq_notebook_utils() -> None:
  """Skips importing note_seq's notebook helpers until one is called.

  ``note_seq/__init__`` imports ``notebook_utils`` (bokeh, pandas): about a second of
  start-up that no command here uses. A stand-in module forwards the two names it
  exports to the real module on first use.
  """
  name = "note_seq.notebook_utils"
  if "note_seq" in sys.modules or name in sys.modules:
    return
  stub = types.ModuleType(name)

  def forward(attr):
    def call(*args, **kwargs):
      sys.modules.pop(name, None)
      return getattr(importlib.import_module(name), attr)(*args, **kwargs)
    return call

  stub.play_sequence = forward("play_sequence")
  stub.plot_sequence = forward("plot_sequence")
  sys.modules[name] = stub


class UsageError(Exception):
  """A mistake in the command line."""


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
  from flax_musicvae import inference  # pylint: disable=g-import-not-at-top
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


class Writer:
  """Names, writes and reports the outputs of one run."""

  def __init__(self, args, config_name: str):
    self.args = args
    stamp = datetime.datetime.now().strftime("%Y-%m-%d_%H%M%S")
    self.prefix = f"{config_name or 'model'}_{args.mode}_{stamp}"
    self.dir = pathlib.Path(args.output_dir)
    self.dir.mkdir(parents=True, exist_ok=True)

  def sequences(self, seqs, titles=None, suffix: str = "", shown=None) -> None:
    """A MIDI (and WAV) per sequence; one PNG of ``shown`` (default ``seqs``), titled."""
    from flax_musicvae import inference, render  # pylint: disable=g-import-not-at-top
    if self.args.qpm:
      seqs = [inference.set_qpm(ns, self.args.qpm) for ns in seqs]
    n = len(seqs)
    for i, ns in enumerate(seqs):
      path = render.write_midi(ns, self.dir / f"{self.prefix}{suffix}-{i + 1:03d}-of-{n:03d}.mid",
                               chord_voicing=self.args.chord_voicing)
      print(f"wrote {path}")
      if self.args.wav:
        wav, engine = render.render_wav(path, path.with_suffix(".wav"))
        print(f"wrote {wav} ({engine})")
    if self.args.png and seqs:
      png = self.dir / f"{self.prefix}{suffix}.png"
      print(f"wrote {render.save_png(seqs if shown is None else shown, png, titles)}")


def _controls(args, model):
  if not args.chords:
    return None
  return model.chord_controls([c.strip() for c in args.chords.split(",")])


def _sample(args, model, writer) -> None:
  if args.num_outputs < 1:
    raise UsageError("--num_outputs must be >= 1")
  z = model.sample_each(args.num_outputs, args.same_z, args.seed)
  if args.attribute_file:
    from flax_musicvae import attributes  # pylint: disable=g-import-not-at-top
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
  from flax_musicvae import inference  # pylint: disable=g-import-not-at-top
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
  import numpy as np  # pylint: disable=g-import-not-at-top
  paths = _inputs(args, 1)
  starts = _start_bars(args, len(paths))
  z, mu, sigma = model.encode(paths, args.seed, starts)
  out = writer.dir / f"{writer.prefix}_encoded.npz"
  np.savez(out, z=z, mu=mu, sigma=sigma, inputs=np.array(paths),
           start_bars=np.array([b or 0 for b in starts]),
           model=np.array(model.config.get("name", "")))
  print(f"wrote {out} (z, mu, sigma: {z.shape})")


def _decode(args, model, writer) -> None:
  import numpy as np  # pylint: disable=g-import-not-at-top
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
  from flax_musicvae import inference  # pylint: disable=g-import-not-at-top
  paths = _inputs(args, 1)
  starts = _start_bars(args, len(paths))
  seqs = [inference.reconstruct(model, path, _temperature(args), args.seed + i, start)
          for i, (path, start) in enumerate(zip(paths, starts))]
  writer.sequences(seqs, [f"reconstruction of {pathlib.Path(p).name}"
                          + (f" from bar {b}" if b else "") for p, b in zip(paths, starts)])


def _task(args, model, writer) -> None:
  from flax_musicvae import inference  # pylint: disable=g-import-not-at-top
  temperature = _temperature(args)
  if args.mode == "drumify" and args.input_wav:
    from flax_musicvae import audio_taps  # pylint: disable=g-import-not-at-top
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
  from flax_musicvae import attributes  # pylint: disable=g-import-not-at-top
  if args.attribute:
    from flax_musicvae import input_pipeline  # pylint: disable=g-import-not-at-top
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


def load_config(args):
  """``--config`` (a file or a name in configs/, read by ``config_lib.load``) with the
  ``--config.<field>=VALUE`` overrides applied as ml_collections' config flags do."""
  # pylint: disable-next=g-import-not-at-top
  from absl import flags
  from ml_collections import config_flags
  from flax_musicvae import config_lib
  try:
    config = config_lib.load(args.config)
  except (OSError, ImportError, SyntaxError, AttributeError) as e:
    raise UsageError(f"--config={args.config}: {e}") from e
  overrides = getattr(args, "config_overrides", [])
  if not overrides:
    return config
  argv = ["generate", *overrides]
  values = flags.FlagValues()
  try:
    holder = config_flags.DEFINE_config_dict("config", config, flag_values=values,
                                             sys_argv=argv)
    values(argv)
  except (flags.Error, AttributeError, KeyError, TypeError, ValueError) as e:
    message = " ".join(str(e).split()).strip("'\"")
    raise UsageError(f"config override {' '.join(overrides)}: {message}") from e
  return holder.value


def run(args) -> None:
  from flax_musicvae import inference  # pylint: disable=g-import-not-at-top
  inference.enable_compilation_cache()
  if args.num_steps is None:
    args.num_steps = 128 if args.mode == "continue" else 5
  if args.temperature is None:
    args.temperature = 1.0 if args.mode == "continue" else 0.5
  if not (args.workdir or args.model or args.checkpoint_file or args.bundle_file):
    if args.mode not in DEFAULT_MODELS:
      raise UsageError(f"--mode={args.mode} has no shipped model: pass --workdir, "
                       "--checkpoint_file" + (" or --bundle_file" if args.mode == "continue"
                                              else " or --model"))
    args.model = DEFAULT_MODELS[args.mode]
  if args.mode == "continue":
    if args.model:
      raise UsageError("--model selects a shipped MusicVAE model; --mode=continue takes a "
                       "MusicRNN --bundle_file, --workdir or --checkpoint_file")
    from flax_musicvae.music_rnn import cli as rnn_cli  # pylint: disable=g-import-not-at-top
    try:
      rnn_cli.continue_mode(args, Writer)
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
    # pylint: disable-next=g-import-not-at-top
    from flax_musicvae.checkpoints import tensor_bundle
    config = load_config(args)
    try:
      model = inference.MusicVAEModel.from_magenta_checkpoint(config, args.checkpoint_file)
    except tensor_bundle.CheckpointError as e:
      raise UsageError(f"{args.checkpoint_file}: {e}") from e
    changed = {k: model.config.model[k] for k in ("z_size", "enc_rnn_size", "dec_rnn_size")
               if model.config.model[k] != config.model[k]}
    if changed:
      print("sizes from the checkpoint: " + ", ".join(f"{k} {v}" for k, v in changed.items()),
            file=sys.stderr)
  writer = Writer(args, model.config.get("name", ""))
  handlers = {"sample": _sample, "similar": _similar, "interpolate": _interpolate,
              "encode": _encode, "decode": _decode, "reconstruct": _reconstruct,
              "attribute": _attribute}
  handlers.get(args.mode, _task)(args, model, writer)


def main(argv: list[str] | None = None) -> int:
  parser = build_parser()
  args, rest = parser.parse_known_args(argv)
  overrides = [a for a in rest if a.startswith("--config.")]
  if len(overrides) != len(rest):
    parser.error("unrecognized arguments: " + " ".join(a for a in rest if a not in overrides))
  if overrides and not args.config:
    parser.error("--config.<field> overrides need --config")
  args.config_overrides = overrides
  # note_seq imports pydub, which warns about a missing ffmpeg that nothing here uses.
  warnings.filterwarnings("ignore", "Couldn't find ffmpeg", RuntimeWarning)
  defer_note_seq_notebook_utils()
  from flax_musicvae import audio_taps, inference  # pylint: disable=g-import-not-at-top
  try:
    run(args)
  except (UsageError, inference.InputError, audio_taps.AudioError, FileNotFoundError) as e:
    parser.exit(2, f"error: {e}\n")
  return 0


if __name__ == "__main__":
  sys.exit(main())
