r"""Imports a Magenta TF1 MusicVAE / GrooVAE checkpoint, or exports ours (no TensorFlow needed).

  python -m flax_musicvae.import_checkpoint --config=configs/groove_4bar.py \
      --checkpoint=groovae_4bar.tar --workdir=/tmp/groovae_4bar
  python -m flax_musicvae.import_checkpoint --workdir=/tmp/my_run \
      --tf_checkpoint=/tmp/export/model.ckpt --magentajs_dir=/tmp/js

``--checkpoint`` is a checkpoint prefix (``.../model.ckpt-1234``), its directory or
one of Magenta's published ``.tar`` bundles. The variables are checked against the
model built from ``--config`` (a mismatch lists missing, unexpected and mis-shaped
variables) and written to ``--workdir`` in the training program's layout:

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

import os
import pathlib
import tarfile
from typing import Any, Sequence

from flax_musicvae import cli  # first: it silences a warning of note_seq's imports
# pylint: disable=g-import-not-at-top,wrong-import-order
from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import ml_collections
from ml_collections import config_flags

from flax_musicvae import workdir as workdir_lib
from flax_musicvae.checkpoints import magenta_import
from flax_musicvae.checkpoints import tensor_bundle

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Model configuration file (configs/<name>.py): needed to import; an "
    "export uses the workdir's config.json.", lock_config=True)
_CHECKPOINT = flags.DEFINE_string(
    "checkpoint", None, "Magenta checkpoint to import: prefix, directory or .tar bundle. "
    "Leave unset to export the latest checkpoint of --workdir.")
_WORKDIR = flags.DEFINE_string(
    "workdir", None, "Workdir to import into, or (without --checkpoint) to export from.")
_TF_CHECKPOINT = flags.DEFINE_string(
    "tf_checkpoint", None, "Export: TF1 checkpoint prefix to write (e.g. out/model.ckpt).")
_SUBSTITUTIONS = flags.DEFINE_multi_string(
    "var_name_substitution", [],
    "PATTERN=REPLACEMENT, repeatable: Magenta's TrainedModel var_name_substitutions "
    "(regex applied to each model variable name to get its checkpoint name).")
_MAGENTAJS_DIR = flags.DEFINE_string(
    "magentajs_dir", None, "Also write a magenta.js checkpoint folder here.")

flags.mark_flags_as_required(["workdir"])


def parse_substitutions(specs: Sequence[str]) -> list[tuple[str, str]]:
  """``["pat=repl", ...]`` -> ``[(pat, repl), ...]`` (split at the first '=')."""
  pairs = []
  for spec in specs:
    pattern, sep, replacement = spec.partition("=")
    if not sep or not pattern:
      raise app.UsageError(f"--var_name_substitution needs PATTERN=REPLACEMENT, got {spec!r}")
    pairs.append((pattern, replacement))
  return pairs


def save_to_workdir(params: Any, step: int, config: ml_collections.ConfigDict,
                    workdir: str | os.PathLike) -> pathlib.Path:
  """Writes ``params`` (with a fresh optimiser state) as checkpoint ``step`` of ``workdir``.

  Returns the step's folder; ``FileExistsError`` when that step exists.
  """
  from flax_musicvae import optim  # pylint: disable=g-import-not-at-top
  params = jax.tree.map(jnp.asarray, params)
  opt_state = optim.create_optimizer(config.train).init(params)
  checkpoint = workdir_lib.Checkpoint(step, params, opt_state,
                                      jax.random.PRNGKey(config.train.seed))
  return pathlib.Path(workdir_lib.save(pathlib.Path(workdir).resolve(), config, checkpoint))


def run(config: ml_collections.ConfigDict | None) -> None:
  if _CHECKPOINT.value:
    if config is None:
      raise app.UsageError("--checkpoint needs --config (the model the checkpoint is for)")
    params, step = magenta_import.import_params(
        _CHECKPOINT.value, config, parse_substitutions(_SUBSTITUTIONS.value))
    folder = save_to_workdir(params, step, config, _WORKDIR.value)
    print(f"Imported {_CHECKPOINT.value} (global_step {step}) -> {folder}")
  else:
    if not (_TF_CHECKPOINT.value or _MAGENTAJS_DIR.value):
      raise app.UsageError("give --checkpoint to import, or --tf_checkpoint and/or "
                           "--magentajs_dir to export")
    config, params, step = workdir_lib.load(_WORKDIR.value)
  if _TF_CHECKPOINT.value:
    prefix = magenta_import.export_tf_checkpoint(params, _TF_CHECKPOINT.value, step)
    print(f"TF1 checkpoint (global_step {step}) -> {prefix}")
  if _MAGENTAJS_DIR.value:
    magenta_import.export_magentajs(params, config, _MAGENTAJS_DIR.value)
    print(f"magenta.js checkpoint -> {_MAGENTAJS_DIR.value}")


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  cli.quiet_logs()
  with cli.user_errors(magenta_import.CheckpointMismatchError, tensor_bundle.CheckpointError,
                       workdir_lib.WorkdirError, tarfile.TarError, EOFError,
                       FileNotFoundError, FileExistsError):
    run(cli.config_value(_CONFIG))


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)
