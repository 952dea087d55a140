"""Data pipelines: MIDI/MusicXML -> NoteSequence collections -> cached training arrays."""

import argparse
import contextlib

from flax_musicvae import cli


def user_errors(parser: argparse.ArgumentParser) -> contextlib.AbstractContextManager[None]:
  """A CLI's bad paths and values (``ValueError``, ``OSError``) as one ``error: ...`` line
  and exit code 2."""
  return cli.parser_errors(parser, ValueError, OSError)
