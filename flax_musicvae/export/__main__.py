"""Exports a training run for devices.

  python -m flax_musicvae.export --workdir=/tmp/groove_4bar --output=/tmp/gx --batch_sizes=1,64

writes, per batch size, ``<output>/b<N>/`` with ``saved_model/`` (signatures encode,
decode, sample), ``model_{fp32,fp16,int8}.tflite`` and ``metadata.json``. Run a
``.tflite`` file on a device with ``python flax_musicvae/lite_runner.py``.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
from typing import Sequence

from flax_musicvae.export import bundle
from flax_musicvae.export import tflite


def _int_list(text: str) -> list[int]:
  try:
    values = [int(v) for v in text.split(",") if v.strip()]
  except ValueError:
    raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}")
  if not values or min(values) < 1:
    raise argparse.ArgumentTypeError(f"batch sizes must be positive integers, got {text!r}")
  return values


def _quantizations(text: str) -> list[str]:
  values = [v.strip() for v in text.split(",") if v.strip()]
  bad = [v for v in values if v not in tflite.QUANTIZATIONS]
  if not values or bad:
    raise argparse.ArgumentTypeError(
        f"quantizations must be among {','.join(tflite.QUANTIZATIONS)}, got {text!r}")
  return values


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(
      prog="python -m flax_musicvae.export",
      description="Export a trained MusicVAE/GrooVAE (latest checkpoint of a training "
                  "workdir) to a TF SavedModel and LiteRT .tflite files with sampling "
                  "noise as inputs, one folder per batch size.",
      epilog=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--workdir", required=True,
                      help="training run directory (config.json + checkpoints/)")
  parser.add_argument("--output", required=True, type=pathlib.Path,
                      help="export directory; gets one b<batch size>/ folder per batch size")
  parser.add_argument("--batch_sizes", type=_int_list, default=[1],
                      help="comma-separated fixed batch sizes (LiteRT needs static shapes); "
                           "default 1")
  parser.add_argument("--quantizations", type=_quantizations,
                      default=list(tflite.QUANTIZATIONS),
                      help="comma-separated .tflite variants: fp32 (float), fp16 (float16 "
                           "weights), int8 (dynamic-range int8 weights); default all")
  return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
  args = parse_args(argv)
  from flax_musicvae import workdir  # pylint: disable=g-import-not-at-top
  try:
    config, params = bundle.load_workdir(args.workdir)
  except (FileNotFoundError, workdir.WorkdirError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  for batch_size in args.batch_sizes:
    out_dir = args.output / f"b{batch_size}"
    meta = bundle.export_bundle(config, params, out_dir, batch_size, args.quantizations)
    sizes = ", ".join(f"{name} {info['bytes'] / 1e6:.2f} MB"
                      for name, info in meta["files"].items() if "bytes" in info)
    print(f"{out_dir}: {sizes}", flush=True)
  return 0


if __name__ == "__main__":
  sys.exit(main())
