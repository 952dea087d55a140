"""Data pipelines: MIDI/MusicXML -> NoteSequence collections -> cached training arrays."""

import argparse
import contextlib
from typing import Iterator
import warnings

# note_seq imports pydub, which warns about a missing ffmpeg that nothing here uses.
warnings.filterwarnings("ignore", "Couldn't find ffmpeg", RuntimeWarning)


@contextlib.contextmanager
def user_errors(parser: argparse.ArgumentParser) -> Iterator[None]:
  """A CLI's bad paths and values as one ``error: ...`` line and exit code 2."""
  try:
    yield
  except (ValueError, OSError) as e:
    parser.exit(2, f"error: {e}\n")
