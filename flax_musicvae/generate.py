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
import sys

from flax_musicvae import attributes
from flax_musicvae import cli

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
  cli.add_config_argument(p, "config (file or name in configs/) for --checkpoint_file, "
                             "e.g. configs/groove_4bar.py.")
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


def _mode_defaults(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
  """The flag defaults that depend on ``--mode``, and its shipped model when none is named."""
  if args.num_steps is None:
    args.num_steps = 128 if args.mode == "continue" else 5
  if args.temperature is None:
    args.temperature = 1.0 if args.mode == "continue" else 0.5
  if not (args.workdir or args.model or args.checkpoint_file or args.bundle_file):
    if args.mode not in DEFAULT_MODELS:
      parser.exit(2, f"error: --mode={args.mode} has no shipped model: pass --workdir, "
                     "--checkpoint_file" + (" or --bundle_file\n" if args.mode == "continue"
                                            else " or --model\n"))
    args.model = DEFAULT_MODELS[args.mode]


def main(argv: list[str] | None = None) -> int:
  parser = build_parser()
  args = cli.parse_args(parser, argv)
  if args.config_overrides and not args.config:
    parser.error("--config.<field> overrides need --config")
  _mode_defaults(parser, args)
  cli.defer_note_seq_notebook_utils()
  # Here, not at the top: --help and command-line mistakes answer without loading JAX.
  from flax_musicvae import generate_modes  # pylint: disable=g-import-not-at-top
  with cli.parser_errors(parser, *generate_modes.ERRORS):
    generate_modes.run(args)
  return 0


if __name__ == "__main__":
  sys.exit(main())
