"""``python -m pipelines.groove`` (``flax-musicvae-groove-data``): build and cache the
splits, print their counts."""

from __future__ import annotations

import argparse
import json
from typing import Sequence

from flax_musicvae import data_fetch, pipelines
from flax_musicvae.data.converter import Mode
from flax_musicvae.data.groove import (GrooveConverter, REDUCED_DRUM_PITCH_CLASSES,
                                       ROLAND_DRUM_PITCH_CLASSES)
from flax_musicvae.pipelines.groove.cache import load_groove_split
from flax_musicvae.pipelines.groove.sources import SPLITS


def _converter_from_flags(args) -> GrooveConverter:
  return GrooveConverter(
      split_bars=args.split_bars, pitch_classes=ROLAND_DRUM_PITCH_CLASSES,
      inference_pitch_classes=REDUCED_DRUM_PITCH_CLASSES, humanize=args.humanize,
      tapify=args.tapify, fixed_velocities=args.fixed_velocities,
      add_instruments=args.add_instruments or None,
      hits_as_controls=args.hits_as_controls,
      max_note_dropout_probability=args.max_note_dropout_probability)


def main(argv: Sequence[str] | None = None) -> None:
  parser = argparse.ArgumentParser(
      prog="python -m pipelines.groove",
      description="Build the cached GrooVAE arrays of the Groove MIDI Dataset "
                  "(tfds groove/<N>bar-midionly windows) and print the counts.")
  parser.add_argument("--root", default="",
                      help="groove/ folder, the folder holding it, or the official zip "
                           "(default: the official zip, downloaded into "
                           f"${data_fetch.CACHE_ENV} or ~/.cache/flax_musicvae once)")
  parser.add_argument("--cache_dir", required=True)
  parser.add_argument("--split_bars", type=int, default=4, choices=(2, 4))
  parser.add_argument("--splits", nargs="+", default=list(SPLITS), choices=SPLITS)
  parser.add_argument("--mode", default="eval", choices=[m.value for m in Mode])
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--workers", type=int, default=2)
  parser.add_argument("--humanize", action="store_true")
  parser.add_argument("--tapify", action="store_true")
  parser.add_argument("--fixed_velocities", action="store_true")
  parser.add_argument("--add_instruments", type=int, nargs="*", default=[])
  parser.add_argument("--hits_as_controls", action="store_true")
  parser.add_argument("--max_note_dropout_probability", type=float, default=None)
  args = parser.parse_args(argv)
  converter = _converter_from_flags(args)
  for split in args.splits:
    with pipelines.user_errors(parser):
      arrays = load_groove_split(args.root, split, converter, args.cache_dir,
                                 mode=args.mode, seed=args.seed, workers=args.workers,
                                 progress=True)
    stats = json.loads(str(arrays["stats"]))
    print(f"{split}: {stats['files']} files, {stats['windows']} windows, "
          f"{stats['examples']} examples {arrays['outputs'].shape}; "
          f"dropped windows {stats['windows_dropped']}; "
          f"skipped files {stats['files_skipped']}")
