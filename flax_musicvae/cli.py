"""What the command-line programs share: quiet logs, config-file flags, error lines, a
faster start, stop signals."""

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

from absl import app  # pylint: disable=g-import-not-at-top,wrong-import-position
from absl import flags
from absl import logging
import ml_collections


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


def quiet_logs() -> None:
  """Warnings only unless ``--verbosity`` was given: no orbax INFO lines, no JAX backend
  probing messages."""
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)


def config_value(flag) -> ml_collections.ConfigDict | None:
  """A config-file flag's value (None when not given); a broken file is a ``UsageError``."""
  try:
    config = flag.value
    if config is not None:
      config.to_dict()  # a file that failed to load raises here
    return config
  except (OSError, ImportError, SyntaxError, AttributeError, ValueError) as e:
    root = e
    while root.__cause__ or root.__context__:
      root = root.__cause__ or root.__context__
    raise app.UsageError(f"--config: {str(root).strip().splitlines()[-1].strip()}") from e


def parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parsing, with a bad flag (e.g. an unknown config key) as one error line."""
  try:
    return flags.FLAGS(argv)
  except (flags.Error, AttributeError, KeyError, TypeError, ValueError) as e:
    message = " ".join(str(e).replace("\\n", " ").replace("\\'", "'").split())
    if len(message) > 1 and message[0] == message[-1] == "'":  # KeyError's repr quotes
      message = message[1:-1]
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


@contextlib.contextmanager
def user_errors(*errors: type[BaseException], exit_code: int = 2) -> Iterator[None]:
  """Turns ``errors`` (and ``UsageError``) into one ``error: ...`` line and ``exit_code``.

  With ``--verbosity=1`` or more they propagate, traceback included.
  """
  try:
    yield
  except (app.UsageError, *errors) as e:
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
