r"""Imports a Magenta TF1 MusicVAE / GrooVAE checkpoint (no TensorFlow needed).

  python -m flax_musicvae.import_checkpoint --config=configs/groove_4bar.py \
      --checkpoint=groovae_4bar.tar --workdir=/tmp/groovae_4bar

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
    "checkpoint", None, "Magenta checkpoint: prefix, directory or .tar bundle.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Workdir to write the imported checkpoint to.")
_SUBSTITUTIONS = flags.DEFINE_multi_string(
    "var_name_substitution", [],
    "PATTERN=REPLACEMENT, repeatable: Magenta's TrainedModel var_name_substitutions "
    "(regex applied to each model variable name to get its checkpoint name).")
_MAGENTAJS_DIR = flags.DEFINE_string(
    "magentajs_dir", None, "Also write a magenta.js checkpoint folder here.")

flags.mark_flags_as_required(["config", "checkpoint", "workdir"])


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
  """Writes ``params`` as checkpoint ``step`` of ``workdir`` (training layout); returns its folder."""
  from flax_musicvae import optim  # pylint: disable=g-import-not-at-top
  from flax_musicvae import train  # pylint: disable=g-import-not-at-top
  workdir = pathlib.Path(workdir)
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


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  config = _CONFIG.value
  params, step = magenta_import.import_params(
      _CHECKPOINT.value, config, parse_substitutions(_SUBSTITUTIONS.value))
  folder = save_to_workdir(params, step, config, _WORKDIR.value)
  print(f"Imported {_CHECKPOINT.value} (global_step {step}) -> {folder}")
  if _MAGENTAJS_DIR.value:
    magenta_import.export_magentajs(params, config, _MAGENTAJS_DIR.value)
    print(f"magenta.js checkpoint -> {_MAGENTAJS_DIR.value}")


if __name__ == "__main__":
  app.run(main)
