r"""Imports a Magenta TF1 MusicVAE / GrooVAE checkpoint, or exports ours (no TensorFlow needed).

  python -m flax_musicvae.import_checkpoint --name=groove_2bar_humanize   (downloads it)
  flax-musicvae-import --name=groove_4bar --source=groovae_4bar.tar --workdir=/tmp/g4
  python -m flax_musicvae.import_checkpoint --config=configs/groove_4bar.py \
      --checkpoint=groovae_4bar.tar --workdir=/tmp/groovae_4bar
  python -m flax_musicvae.import_checkpoint --workdir=/tmp/my_run \
      --tf_checkpoint=/tmp/export/model.ckpt --magentajs_dir=/tmp/js

``--name`` is one of Magenta's published checkpoints (``PUBLISHED``; the table with
their configs is docs/magenta_checkpoints.md): its config is ours of that name and
``--source`` a local ``.tar`` or a URL (default: Magenta's address, downloaded once to
``~/.cache/flax_musicvae/downloads``); ``--workdir`` defaults to
``~/.cache/flax_musicvae/magenta/<name>``. ``--checkpoint`` is a checkpoint prefix
(``.../model.ckpt-1234``), its directory or a ``.tar`` bundle, for ``--config``.
The sizes (``z_size``, ``enc_rnn_size``, ``dec_rnn_size``) are read off the
checkpoint's shapes; the variables are checked against the model built from the
config (a mismatch lists missing, unexpected and mis-shaped variables) and written
to the workdir in the training program's layout:

  <workdir>/config.json
  <workdir>/checkpoints/<global_step>/params   orbax: the imported weights
  <workdir>/checkpoints/<global_step>/train    orbax: step, fresh optimiser state, rng
  <workdir>/checkpoints/<global_step>/config   the config as JSON

so ``python -m flax_musicvae.main --mode=eval --workdir=<workdir>`` evaluates the
imported model, ``--mode=train`` fine-tunes it (fresh Adam moments, learning rate at
``global_step``), and ``--config.train.warm_start_from=<workdir>`` starts another run
from its weights. ``--magentajs_dir`` also writes a @magenta/music checkpoint folder.

Without ``--checkpoint`` it exports instead: the parameters of the newest usable
checkpoint in ``--workdir`` (with the workdir's own config.json) go to a TF1 checkpoint
with Magenta's variable names and ``global_step`` (``--tf_checkpoint``, restorable by
Magenta's ``TrainedModel``) and/or a magenta.js folder (``--magentajs_dir``).

User errors (a bad or mismatched checkpoint, an existing step, a missing workdir) are
one ``error: ...`` line and exit code 2.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import shutil
import sys
import tarfile
from typing import Any, Sequence
import urllib.error
import urllib.parse
import urllib.request

from flax_musicvae import cli  # first: it silences a warning of note_seq's imports
# pylint: disable=g-import-not-at-top,wrong-import-order
import jax
import jax.numpy as jnp
import ml_collections

from flax_musicvae import config_lib
from flax_musicvae import optim
from flax_musicvae import workdir as workdir_lib
from flax_musicvae.checkpoints import magenta_import
from flax_musicvae.checkpoints import tensor_bundle
from flax_musicvae.inference import loading

#: Magenta's published MusicVAE / GrooVAE checkpoints (magenta/models/music_vae/README.md):
#: our name -> (Magenta's checkpoint id: the .tar's name, our config in configs/).
PUBLISHED = {
    "cat_mel_2bar_big": ("cat-mel_2bar_big", "cat_mel_2bar_big"),
    "hierdec_mel_16bar": ("hierdec-mel_16bar", "hierdec_mel_16bar"),
    "hierdec_trio_16bar": ("hierdec-trio_16bar", "hierdec_trio_16bar"),
    "cat_drums_2bar_small_lokl": ("cat-drums_2bar_small.lokl", "cat_drums_2bar_small"),
    "cat_drums_2bar_small_hikl": ("cat-drums_2bar_small.hikl", "cat_drums_2bar_small"),
    "nade_drums_2bar_full": ("nade-drums_2bar_full", "nade_drums_2bar_full"),
    "groove_4bar": ("groovae_4bar", "groove_4bar"),
    "groove_2bar_humanize": ("groovae_2bar_humanize", "groove_2bar_humanize"),
    "groove_2bar_tap_fixed_velocity": ("groovae_2bar_tap_fixed_velocity",
                                       "groove_2bar_tap_fixed_velocity"),
    "groove_2bar_add_closed_hh": ("groovae_2bar_add_closed_hh", "groove_2bar_add_closed_hh"),
    "groove_2bar_hits_control": ("groovae_2bar_hits_control", "groove_2bar_hits_control_tfds"),
}
MAGENTA_URL = "https://storage.googleapis.com/magentadata/models/music_vae/checkpoints/{}.tar"

def published(name: str) -> tuple[str, str]:
  """``(our name, Magenta id)`` of a published checkpoint given either name."""
  for ours, (magenta_id, _) in PUBLISHED.items():
    if name in (ours, magenta_id):
      return ours, magenta_id
  raise cli.UsageError(f"unknown checkpoint name {name!r}; known: {', '.join(PUBLISHED)} "
                       "(docs/magenta_checkpoints.md)")


def fetch(source: str, cache_dir: str | os.PathLike) -> pathlib.Path:
  """A local path for ``source``: itself, or an http(s) URL downloaded once to
  ``cache_dir`` (a partial download never takes the final name)."""
  if urllib.parse.urlparse(source).scheme not in ("http", "https"):
    if not os.path.exists(source):
      raise FileNotFoundError(f"{source}: no such file")
    return pathlib.Path(source)
  name = pathlib.PurePosixPath(urllib.parse.urlparse(source).path).name or "checkpoint.tar"
  target = pathlib.Path(cache_dir) / name
  if target.exists():
    print(f"using {target} (downloaded before from {source})")
    return target
  target.parent.mkdir(parents=True, exist_ok=True)
  partial = target.with_name(f"{name}.{os.getpid()}.part")
  try:
    with urllib.request.urlopen(source, timeout=60) as response, open(partial, "wb") as f:
      shutil.copyfileobj(response, f, 1 << 20)
  except (urllib.error.URLError, OSError) as e:
    partial.unlink(missing_ok=True)
    raise cli.UsageError(f"cannot download {source}: {getattr(e, 'reason', e)}") from e
  partial.replace(target)
  print(f"downloaded {source} -> {target} ({target.stat().st_size:,} bytes)")
  return target


def import_published(name: str, source: str | None = None,
                     workdir: str | os.PathLike | None = None,
                     substitutions: Sequence[tuple[str, str]] = ()
                     ) -> tuple[pathlib.Path, ml_collections.ConfigDict]:
  """Imports published checkpoint ``name`` from ``source`` (a file or URL; default
  Magenta's URL) into ``workdir`` (default ``<cache>/magenta/<name>``).

  Returns the checkpoint folder and the config (sizes read off the checkpoint)."""
  ours, magenta_id = published(name)
  path = fetch(source or MAGENTA_URL.format(magenta_id), loading.CACHE_DIR / "downloads")
  config, _, _ = loading.with_checkpoint_sizes(config_lib.load(PUBLISHED[ours][1]), path)
  params, step = magenta_import.import_params(path, config, substitutions)
  workdir = workdir or loading.CACHE_DIR / "magenta" / ours
  return save_to_workdir(params, step, config, workdir), config


def parse_substitutions(specs: Sequence[str]) -> list[tuple[str, str]]:
  """``["pat=repl", ...]`` -> ``[(pat, repl), ...]`` (split at the first '=')."""
  pairs = []
  for spec in specs:
    pattern, sep, replacement = spec.partition("=")
    if not sep or not pattern:
      raise cli.UsageError(f"--var_name_substitution needs PATTERN=REPLACEMENT, got {spec!r}")
    pairs.append((pattern, replacement))
  return pairs


def save_to_workdir(params: Any, step: int, config: ml_collections.ConfigDict,
                    workdir: str | os.PathLike) -> pathlib.Path:
  """Writes ``params`` (with a fresh optimiser state) as checkpoint ``step`` of ``workdir``.

  Returns the step's folder; ``FileExistsError`` when that step exists.
  """
  params = jax.tree.map(jnp.asarray, params)
  opt_state = optim.create_optimizer(config.train).init(params)
  checkpoint = workdir_lib.Checkpoint(step, params, opt_state,
                                      jax.random.PRNGKey(config.train.seed))
  return pathlib.Path(workdir_lib.save(pathlib.Path(workdir).resolve(), config, checkpoint))


def run(args: argparse.Namespace) -> None:
  """Imports or exports as ``args`` say; raises the library's errors."""
  config = cli.load_config(args.config, args.config_overrides)
  if args.name:
    if args.checkpoint or config is not None:
      raise cli.UsageError("--name sets the config and checkpoint: leave out --config and "
                           "--checkpoint (or use them without --name)")
    folder, config = import_published(args.name, args.source, args.workdir,
                                      parse_substitutions(args.var_name_substitution))
    print(f"Imported {args.name} -> {folder}\n  use it: flax-musicvae-generate "
          f"--workdir={folder.parent.parent} --mode=sample")
    if not (args.tf_checkpoint or args.magentajs_dir):
      return
    config, params, step = workdir_lib.load(folder.parent.parent)
  elif not args.workdir:
    raise cli.UsageError("--workdir is needed (to import into, or to export from)")
  elif args.source:
    raise cli.UsageError("--source goes with --name; a checkpoint for --config is --checkpoint")
  elif args.checkpoint:
    if config is None:
      raise cli.UsageError("--checkpoint needs --config (the model the checkpoint is for)")
    config, _, _ = loading.with_checkpoint_sizes(config, args.checkpoint)
    params, step = magenta_import.import_params(
        args.checkpoint, config, parse_substitutions(args.var_name_substitution))
    folder = save_to_workdir(params, step, config, args.workdir)
    print(f"Imported {args.checkpoint} (global_step {step}) -> {folder}")
  else:
    if not (args.tf_checkpoint or args.magentajs_dir):
      raise cli.UsageError("give --checkpoint to import, or --tf_checkpoint and/or "
                           "--magentajs_dir to export")
    config, params, step = workdir_lib.load(args.workdir)
  if args.tf_checkpoint:
    prefix = magenta_import.export_tf_checkpoint(params, args.tf_checkpoint, step)
    print(f"TF1 checkpoint (global_step {step}) -> {prefix}")
  if args.magentajs_dir:
    magenta_import.export_magentajs(params, config, args.magentajs_dir)
    print(f"magenta.js checkpoint -> {args.magentajs_dir}")


def build_parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(prog="python -m flax_musicvae.import_checkpoint",
                              description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--name", help="a published Magenta checkpoint: " + ", ".join(PUBLISHED)
                 + " (or Magenta's id, e.g. groovae_4bar); sets the config and the default "
                 "--source")
  p.add_argument("--source", help="with --name: a local .tar / checkpoint or an http(s) URL "
                                  "(default: Magenta's address of the .tar)")
  cli.add_config_argument(p, "model configuration file (configs/<name>.py): needed to "
                             "import; an export uses the workdir's config.json.")
  p.add_argument("--checkpoint", help="Magenta checkpoint to import: prefix, directory or .tar "
                                      "bundle; leave unset to export the latest checkpoint of "
                                      "--workdir")
  p.add_argument("--workdir", help="workdir to import into, or (without --checkpoint) to "
                                   "export from")
  p.add_argument("--tf_checkpoint", help="export: TF1 checkpoint prefix to write "
                                         "(e.g. out/model.ckpt)")
  p.add_argument("--var_name_substitution", action="append", default=[],
                 metavar="PATTERN=REPLACEMENT",
                 help="repeatable: Magenta's TrainedModel var_name_substitutions (regex "
                      "applied to each model variable name to get its checkpoint name)")
  p.add_argument("--magentajs_dir", help="also write a magenta.js checkpoint folder here")
  p.add_argument("--verbosity", type=int, help=cli.VERBOSITY_HELP)
  return p


def main(argv: list[str] | None = None) -> int:
  args = cli.parse_args(build_parser(), argv)
  cli.quiet_logs(args.verbosity)
  with cli.user_errors(magenta_import.CheckpointMismatchError, tensor_bundle.CheckpointError,
                       workdir_lib.WorkdirError, tarfile.TarError, EOFError,
                       FileNotFoundError, FileExistsError):
    run(args)
  return 0


if __name__ == "__main__":
  sys.exit(main())
