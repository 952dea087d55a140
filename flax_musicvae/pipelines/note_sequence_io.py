"""NoteSequence collections as TFRecord files, without TensorFlow.

This is the format Magenta's ``convert_dir_to_note_sequences`` writes and
``music_vae_train --examples_path`` reads: an uncompressed TFRecord file whose
records are serialized ``note_seq.NoteSequence`` protos. The framing (and its
checksums, verified on read) is :mod:`flax_musicvae.io.tfrecord`, whose writer, reader
and error are handed on here for the collection's users.
"""

from __future__ import annotations

import os
from typing import Iterable, Iterator

from google.protobuf import message
from note_seq.protobuf import music_pb2

from flax_musicvae.io.tfrecord import TFRecordCorruptionError, TFRecordWriter
from flax_musicvae.io.tfrecord import iter_records, write_records

__all__ = ["TFRecordCorruptionError", "TFRecordWriter", "iter_records", "write_records",
           "write_note_sequences", "read_note_sequences"]


def write_note_sequences(path: str | os.PathLike,
                         sequences: Iterable[music_pb2.NoteSequence]) -> int:
  """Writes NoteSequences as a TFRecord collection; returns the count."""
  return write_records(path, (ns.SerializeToString() for ns in sequences))


def read_note_sequences(path: str | os.PathLike,
                        verify: bool = True) -> Iterator[music_pb2.NoteSequence]:
  """Yields the NoteSequences of a TFRecord collection (checksums verified)."""
  for index, record in enumerate(iter_records(path, verify=verify)):
    try:
      yield music_pb2.NoteSequence.FromString(record)
    except message.DecodeError as e:
      raise ValueError(
          f"{os.fspath(path)}: record {index} is not a NoteSequence: {e}") from e
