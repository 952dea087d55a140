"""What the absl command-line programs share: quiet logs, config-file flags, error lines."""

from __future__ import annotations

import contextlib
import sys
from typing import Iterator
import warnings

# note_seq imports pydub, which warns at import time about an ffmpeg nothing here uses.
warnings.filterwarnings("ignore", "Couldn't find ffmpeg", RuntimeWarning)

from absl import app  # pylint: disable=g-import-not-at-top,wrong-import-position
from absl import flags
from absl import logging
import ml_collections


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
