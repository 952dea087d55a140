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
JAX's own settings come from its environment variables (e.g. ``JAX_PLATFORMS=cpu``).

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
import argparse
import os
import sys

from absl import logging


def build_parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(prog="python -m flax_musicvae.main", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--workdir", required=True,
                 help="run directory: checkpoints, config.json, metrics, TensorBoard events")
  cli.add_config_argument(p, "configuration file (configs/<name>.py, or a name in configs/); "
                             "optional for an existing workdir, whose config.json the "
                             "overrides then change.")
  p.add_argument("--mode", choices=("train", "eval"), default="train",
                 help="train (resumes from the workdir's latest checkpoint) or eval")
  p.add_argument("--verbosity", type=int, help=cli.VERBOSITY_HELP)
  multi = p.add_argument_group("several hosts")
  multi.add_argument("--distributed", action=argparse.BooleanOptionalAction,
                     default=os.environ.get("FLAX_MUSICVAE_DISTRIBUTED", "") == "1",
                     help="call jax.distributed.initialize() (multi-host training); "
                          "FLAX_MUSICVAE_DISTRIBUTED=1 turns it on by default")
  multi.add_argument("--coordinator_address", help="host:port of process 0 (optional)")
  multi.add_argument("--num_processes", type=int, help="number of hosts (optional)")
  multi.add_argument("--process_id", type=int, help="this host's index (optional)")
  return p


def run(args: argparse.Namespace) -> None:
  """Trains or evaluates; raises the library's errors."""
  # Here, not at the top: --help and command-line mistakes answer without loading JAX.
  import jax  # pylint: disable=g-import-not-at-top
  from flax_musicvae import train  # pylint: disable=g-import-not-at-top
  from flax_musicvae import workdir as workdir_lib  # pylint: disable=g-import-not-at-top
  if args.distributed:
    jax.distributed.initialize(coordinator_address=args.coordinator_address,
                               num_processes=args.num_processes, process_id=args.process_id)
  logging.info("JAX process %d / %d, local devices: %s", jax.process_index(),
               jax.process_count(), jax.local_devices())
  workdir = args.workdir
  if workdir_lib.is_local(workdir):  # orbax wants absolute paths
    workdir = os.path.abspath(os.path.expanduser(workdir))
  # Overrides without --config change the run's own config (train.* only, as --config may).
  saved = (workdir_lib.load_config(workdir) if args.config_overrides and not args.config
           else None)
  config = cli.load_config(args.config, args.config_overrides, base=saved)
  if args.mode == "train":
    train.train_and_evaluate(config, workdir)
  else:
    train.evaluate(config, workdir)


def main(argv: list[str] | None = None) -> int:
  args = cli.parse_args(build_parser(), argv)
  cli.quiet_logs(args.verbosity)
  from flax_musicvae import train, workdir  # pylint: disable=g-import-not-at-top
  try:
    with cli.user_errors(train.NonFiniteError, workdir.SaveError, exit_code=1), \
        cli.user_errors(train.ConfigError, workdir.WorkdirError, FileNotFoundError):
      run(args)
  except train.Interrupted as e:
    print(f"{args.workdir}: {e}, exiting", file=sys.stderr)
    return 128 + e.signum
  return 0


if __name__ == "__main__":
  sys.exit(main())
