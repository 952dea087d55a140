"""What the command-line programs share (all argparse): quiet logs, ``--config`` with its
``--config.<field>=VALUE`` overrides, error lines, a faster start, stop signals."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import signal
import sys
import threading
import types
from typing import Iterator
import warnings

# note_seq imports pydub, which warns at import time about an ffmpeg nothing here uses.
warnings.filterwarnings("ignore", "Couldn't find ffmpeg", RuntimeWarning)

from absl import flags  # pylint: disable=g-import-not-at-top,wrong-import-position
from absl import logging
import ml_collections

from flax_musicvae import config_lib  # pylint: disable=g-import-not-at-top,wrong-import-position


def defer_note_seq_notebook_utils() -> None:
  """Skips importing note_seq's notebook helpers until one is called.

  ``note_seq/__init__`` imports ``notebook_utils`` (bokeh, pandas): about a second of
  start-up that no command here uses. A stand-in module forwards the two names it
  exports to the real module on first use.
  """
  name = "note_seq.notebook_utils"
  if "note_seq" in sys.modules or name in sys.modules:
    return
  stub = types.ModuleType(name)

  def forward(attr):
    def call(*args, **kwargs):
      sys.modules.pop(name, None)
      return getattr(importlib.import_module(name), attr)(*args, **kwargs)
    return call

  stub.play_sequence = forward("play_sequence")
  stub.plot_sequence = forward("plot_sequence")
  sys.modules[name] = stub


class UsageError(Exception):
  """A command-line mistake: one ``error: ...`` line and exit code 2 (see ``user_errors``)."""


VERBOSITY_HELP = ("log level (absl's): 0 adds INFO logs, 1 DEBUG logs and the tracebacks of "
                  "user errors; default: warnings only")


def quiet_logs(verbosity: int | None = None) -> None:
  """absl logging (ours and orbax's) at ``verbosity``; warnings only when None (no orbax INFO
  lines, no JAX backend probing messages).

  absl's flags are marked parsed (nothing here parses them), so absl logs without its
  "Logging before flag parsing" line.
  """
  flags.FLAGS.mark_as_parsed()
  logging.set_verbosity(logging.WARNING if verbosity is None else verbosity)


def add_config_argument(parser: argparse.ArgumentParser, help_text: str) -> None:
  """``--config`` (a file or a name in configs/), documented with its overrides."""
  parser.add_argument("--config", metavar="FILE", help=(
      f"{help_text} Any field can be changed: --config.<field>=VALUE "
      "(e.g. --config.train.batch_size=64), repeatable."))


def parse_args(parser: argparse.ArgumentParser, argv: list[str] | None = None
               ) -> argparse.Namespace:
  """``parser``'s arguments plus ``config_overrides``: the ``--config.<field>=VALUE`` (or
  ``--config.<field> VALUE``) arguments, in order; anything else unknown is a usage error."""
  args, rest = parser.parse_known_args(argv)
  overrides, unknown = [], []
  rest = iter(rest)
  for arg in rest:
    if not arg.startswith("--config."):
      unknown.append(arg)
    elif "=" in arg:
      overrides.append(arg)
    else:
      value = next(rest, None)
      if value is None:
        parser.error(f"{arg} needs a value: {arg}=VALUE")
      overrides.append(f"{arg}={value}")
  if unknown:
    parser.error("unrecognized arguments: " + " ".join(unknown))
  args.config_overrides = overrides
  return args


def load_config(config: str | None, overrides: list[str],
                base: ml_collections.ConfigDict | None = None
                ) -> ml_collections.ConfigDict | None:
  """``config_lib.load(config, overrides)`` (or ``base`` with the overrides when there is no
  ``config``; None when neither), a broken file or override as a ``UsageError``."""
  try:
    if config:
      return config_lib.load(config, overrides)
    return config_lib.override(base, overrides) if base is not None else None
  except (OSError, ImportError, SyntaxError, AttributeError, ValueError) as e:
    root = e
    while root.__cause__ or (root.__context__ and not root.__suppress_context__):
      root = root.__cause__ or root.__context__
    where = f"--config={config}" if config else "--config"
    raise UsageError(f"{where}: {str(root).strip().splitlines()[-1].strip()}") from e


@contextlib.contextmanager
def user_errors(*errors: type[BaseException], exit_code: int = 2) -> Iterator[None]:
  """Turns ``errors`` (and ``UsageError``) into one ``error: ...`` line and ``exit_code``.

  With ``--verbosity=1`` or more they propagate, traceback included.
  """
  try:
    yield
  except (UsageError, *errors) as e:
    if logging.get_verbosity() >= logging.DEBUG:
      raise
    print(f"error: {e}", file=sys.stderr)
    sys.exit(exit_code)


@contextlib.contextmanager
def parser_errors(parser: argparse.ArgumentParser,
                  *errors: type[BaseException]) -> Iterator[None]:
  """An argparse program's ``errors`` as one ``error: ...`` line and exit code 2."""
  try:
    yield
  except errors as e:
    parser.exit(2, f"error: {e}\n")


class Interrupted(KeyboardInterrupt):
  """SIGTERM/SIGINT stopped the program (after saving what there was to save)."""

  def __init__(self, signum: int):
    super().__init__(f"stopped by {signal.Signals(signum).name}")
    self.signum = signum


class StopSignals:
  """SIGTERM and SIGINT recorded in ``signum`` instead of raised.

  Long work polls ``check()`` (or ``signum``) at points where stopping is safe, so a
  signal never lands inside a train step, a save or a destructor that would swallow it.
  A second signal raises ``Interrupted`` at once.
  """

  SIGNALS = (signal.SIGTERM, signal.SIGINT)

  def __init__(self):
    self.signum = 0

  def _handle(self, signum, frame) -> None:
    del frame
    if self.signum:
      raise Interrupted(self.signum)
    self.signum = signum

  def check(self) -> None:
    if self.signum:
      raise Interrupted(self.signum)

  def install(self) -> dict:
    """Installs the handlers (main thread only); returns the ones they replace."""
    if threading.current_thread() is not threading.main_thread():
      return {}
    return {s: signal.signal(s, self._handle) for s in self.SIGNALS}

  @contextlib.contextmanager
  def installed(self) -> Iterator["StopSignals"]:
    """Handlers in place for the block (kept if a CLI installed them for the process)."""
    if all(signal.getsignal(s) == self._handle for s in self.SIGNALS):
      yield self
      return
    previous = self.install()
    try:
      yield self
    finally:
      for s, handler in previous.items():
        signal.signal(s, handler)
      self.signum = 0


#: The process's stop flag: CLIs install it first thing, training polls it.
STOP = StopSignals()
