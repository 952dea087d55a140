r"""Trains or evaluates a MusicVAE / GrooVAE model.

  python -m flax_musicvae.main --config=configs/groove_4bar.py --workdir=/tmp/groove_4bar
  python -m flax_musicvae.main --workdir=/tmp/groove_4bar              # resume
  python -m flax_musicvae.main --workdir=/tmp/groove_4bar --config.train.num_train_steps=2000
  python -m flax_musicvae.main --workdir=/tmp/groove_4bar --mode=eval
  python -m flax_musicvae.main --config=configs/groove_4bar.py --workdir=/tmp/g \
      --config.train.batch_size=64 --config.train.num_train_steps=1000

An existing workdir remembers its config (``config.json``): ``--config`` may then change
training settings (``train.*``) but not the model or the data. SIGTERM or Ctrl-C stop
after the current step, save it and exit with 128 + the signal number. User errors are
one ``error: ...`` line and exit code 2; ``--verbosity=1`` shows tracebacks and INFO logs.

Several hosts (TPU pod slice, GPU cluster): add ``--distributed`` (or set
``FLAX_MUSICVAE_DISTRIBUTED=1``) on every host; ``jax.distributed.initialize`` then
detects the cluster, or takes ``--coordinator_address``, ``--num_processes`` and
``--process_id``. See ``launch/README.md``.
"""

from __future__ import annotations

from flax_musicvae import cli  # pylint: disable=g-bad-import-order
from flax_musicvae import hugepages  # pylint: disable=g-bad-import-order

if __name__ == "__main__":  # not in multiprocessing's spawned children (Pool stops them by SIGTERM)
  hugepages.reexec()  # XLA's CPU buffers in huge pages: 10-20 % faster steps here
  cli.STOP.install()  # before the slow imports: a signal from now on exits 128 + signal

# pylint: disable=g-import-not-at-top,wrong-import-position
import os
import sys

from absl import app
from absl import flags
from absl import logging
import jax
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Configuration file (configs/<name>.py); optional for an existing workdir.",
    lock_config=True)
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

flags.mark_flags_as_required(["workdir"])


def run() -> None:
  """Trains or evaluates; raises the library's errors."""
  from flax_musicvae import train  # pylint: disable=g-import-not-at-top
  from flax_musicvae import workdir as workdir_lib  # pylint: disable=g-import-not-at-top
  if _DISTRIBUTED.value:
    jax.distributed.initialize(coordinator_address=_COORDINATOR.value,
                               num_processes=_NUM_PROCESSES.value,
                               process_id=_PROCESS_ID.value)
  logging.info("JAX process %d / %d, local devices: %s", jax.process_index(),
               jax.process_count(), jax.local_devices())
  workdir = _WORKDIR.value
  if workdir_lib.is_local(workdir):  # orbax wants absolute paths
    workdir = os.path.abspath(os.path.expanduser(workdir))
  if _MODE.value == "train":
    train.train_and_evaluate(cli.config_value(_CONFIG), workdir)
  else:
    train.evaluate(cli.config_value(_CONFIG), workdir)


#: ``saved_config.py``, as a config file path (ml_collections loads it; nothing imports it here).
SAVED_CONFIG_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "saved_config.py")


def with_saved_config(argv: list[str]) -> list[str]:
  """``argv``, with ``--config=<saved_config.py>:<workdir>`` added when it has
  ``--config.<field>`` overrides and a ``--workdir`` but no ``--config``: the overrides then
  apply to the config the run was started with (e.g. ``--config.train.num_train_steps``)."""
  if (any(a in ("--config", "-config") or a.startswith(("--config=", "-config=")) for a in argv)
      or not any(a.startswith(("--config.", "-config.")) for a in argv)):
    return argv
  run_dir = None
  for i, arg in enumerate(argv):
    if arg.startswith(("--workdir=", "-workdir=")):
      run_dir = arg.split("=", 1)[1]
    elif arg in ("--workdir", "-workdir") and i + 1 < len(argv):
      run_dir = argv[i + 1]
  if not run_dir:
    return argv
  return argv[:1] + [f"--config={SAVED_CONFIG_FILE}:{run_dir}"] + argv[1:]


def parse_flags(argv: list[str]) -> list[str]:
  """:func:`cli.parse_flags` after :func:`with_saved_config`."""
  return cli.parse_flags(with_saved_config(argv))


def main(argv) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  cli.quiet_logs()
  from flax_musicvae import train, workdir  # pylint: disable=g-import-not-at-top
  try:
    with cli.user_errors(train.NonFiniteError, workdir.SaveError, exit_code=1), \
        cli.user_errors(train.ConfigError, workdir.WorkdirError, FileNotFoundError):
      run()
  except train.Interrupted as e:
    print(f"{_WORKDIR.value}: {e}, exiting", file=sys.stderr)
    sys.exit(128 + e.signum)


if __name__ == "__main__":
  jax.config.config_with_absl()
  app.run(main, flags_parser=parse_flags)
