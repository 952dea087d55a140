r"""Trains or evaluates a MusicVAE / GrooVAE model.

  python -m flax_musicvae.main --config=configs/groove_4bar.py --workdir=/tmp/groove_4bar
  python -m flax_musicvae.main --config=configs/groove_4bar.py --workdir=/tmp/groove_4bar \
      --mode=eval
  python -m flax_musicvae.main --config=configs/groove_4bar.py --workdir=/tmp/g \
      --config.train.batch_size=64 --config.train.num_train_steps=1000

Several hosts (TPU pod slice, GPU cluster): add ``--distributed`` (or set
``FLAX_MUSICVAE_DISTRIBUTED=1``) on every host; ``jax.distributed.initialize`` then
detects the cluster, or takes ``--coordinator_address``, ``--num_processes`` and
``--process_id``. See ``launch/README.md``.
"""

from __future__ import annotations

import os
import signal

from absl import app
from absl import flags
from absl import logging
import jax
from ml_collections import config_flags

from flax_musicvae import train

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Training configuration file (configs/<name>.py).", lock_config=True)
_WORKDIR = flags.DEFINE_string(
    "workdir", None, "Run directory: checkpoints, config.json, metrics, TensorBoard events.")
_MODE = flags.DEFINE_enum("mode", "train", ["train", "eval"],
                          "train (resumes from the workdir's latest checkpoint) or eval.")
_DISTRIBUTED = flags.DEFINE_bool(
    "distributed", os.environ.get("FLAX_MUSICVAE_DISTRIBUTED", "") == "1",
    "Call jax.distributed.initialize() (multi-host training).")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None,
                                   "host:port of process 0 (multi-host, optional).")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Number of hosts (optional).")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This host's index (optional).")

flags.mark_flags_as_required(["config", "workdir"])


def _interrupt(signum, frame) -> None:
  del frame
  raise KeyboardInterrupt(f"received signal {signum}")


def main(argv) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  # SIGTERM (preemption, scancel, kill) ends training like Ctrl-C: checkpoint, then exit.
  signal.signal(signal.SIGTERM, _interrupt)
  if _DISTRIBUTED.value:
    jax.distributed.initialize(coordinator_address=_COORDINATOR.value,
                               num_processes=_NUM_PROCESSES.value,
                               process_id=_PROCESS_ID.value)
  logging.info("JAX process %d / %d, local devices: %s", jax.process_index(),
               jax.process_count(), jax.local_devices())
  if _MODE.value == "train":
    train.train_and_evaluate(_CONFIG.value, _WORKDIR.value)
  else:
    train.evaluate(_CONFIG.value, _WORKDIR.value)


if __name__ == "__main__":
  jax.config.config_with_absl()
  app.run(main)
