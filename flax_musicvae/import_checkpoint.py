r"""Imports a Magenta TF1 MusicVAE / GrooVAE checkpoint, or exports ours (no TensorFlow needed).

  python -m flax_musicvae.import_checkpoint --config=configs/groove_4bar.py \
      --checkpoint=groovae_4bar.tar --workdir=/tmp/groovae_4bar
  python -m flax_musicvae.import_checkpoint --config=configs/groove_4bar.py \
      --workdir=/tmp/my_run --tf_checkpoint=/tmp/export/model.ckpt --magentajs_dir=/tmp/js

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

Without ``--checkpoint`` it exports instead: the parameters of the latest checkpoint in
``--workdir`` go to a TF1 checkpoint with Magenta's variable names and ``global_step``
(``--tf_checkpoint``, restorable by Magenta's ``TrainedModel``) and/or a magenta.js
folder (``--magentajs_dir``).
"""

from __future__ import annotations

import os
import pathlib
from typing import Any, Sequence

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import ml_collections
from ml_collections import config_flags

from flax_musicvae.checkpoints import magenta_import

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Model configuration file (configs/<name>.py).", lock_config=True)
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

flags.mark_flags_as_required(["config", "workdir"])


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
  """Writes ``params`` as checkpoint ``step`` of ``workdir``; returns the step's folder."""
  from flax_musicvae import optim  # pylint: disable=g-import-not-at-top
  from flax_musicvae import train  # pylint: disable=g-import-not-at-top
  workdir = pathlib.Path(workdir).resolve()
  workdir.mkdir(parents=True, exist_ok=True)
  (workdir / "config.json").write_text(config.to_json_best_effort(indent=2) + "\n")
  params = jax.tree.map(jnp.asarray, params)
  tx = optim.create_optimizer(config.train)
  state = train.TrainState(step=jnp.asarray(step, jnp.int32), params=params,
                           opt_state=tx.init(params),
                           rng=jax.random.PRNGKey(config.train.seed))
  with train.checkpoint_manager(workdir, config) as manager:
    if step in manager.all_steps():
      raise FileExistsError(f"{workdir / 'checkpoints' / str(step)} already exists")
    train.save_checkpoint(manager, state, config)
    manager.wait_until_finished()
  return workdir / "checkpoints" / str(step)


def load_from_workdir(config: ml_collections.ConfigDict, workdir: str | os.PathLike
                      ) -> tuple[Any, int]:
  """(params, step) of the latest checkpoint in ``workdir``."""
  from flax_musicvae import train  # pylint: disable=g-import-not-at-top
  from flax_musicvae.models import tf_names  # pylint: disable=g-import-not-at-top
  folder = pathlib.Path(workdir).resolve() / "checkpoints"
  steps = sorted(int(p.name) for p in folder.glob("*") if p.name.isdigit())
  if not steps:
    raise FileNotFoundError(f"no checkpoint under {folder}")
  template = tf_names.unflatten({p: jnp.zeros(s, jnp.float32)
                                 for p, s in tf_names.param_shapes(config).items()})
  return train.load_params(folder / str(steps[-1]), template), steps[-1]


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  config = _CONFIG.value
  if _CHECKPOINT.value:
    params, step = magenta_import.import_params(
        _CHECKPOINT.value, config, parse_substitutions(_SUBSTITUTIONS.value))
    folder = save_to_workdir(params, step, config, _WORKDIR.value)
    print(f"Imported {_CHECKPOINT.value} (global_step {step}) -> {folder}")
  else:
    if not (_TF_CHECKPOINT.value or _MAGENTAJS_DIR.value):
      raise app.UsageError("give --checkpoint to import, or --tf_checkpoint and/or "
                           "--magentajs_dir to export")
    params, step = load_from_workdir(config, _WORKDIR.value)
  if _TF_CHECKPOINT.value:
    prefix = magenta_import.export_tf_checkpoint(params, _TF_CHECKPOINT.value, step)
    print(f"TF1 checkpoint (global_step {step}) -> {prefix}")
  if _MAGENTAJS_DIR.value:
    magenta_import.export_magentajs(params, config, _MAGENTAJS_DIR.value)
    print(f"magenta.js checkpoint -> {_MAGENTAJS_DIR.value}")


if __name__ == "__main__":
  app.run(main)
