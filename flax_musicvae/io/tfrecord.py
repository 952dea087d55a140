"""Uncompressed TFRecord files, without TensorFlow.

Each record is framed as

  uint64 length (little endian) | uint32 masked_crc32c(length bytes)
  | data | uint32 masked_crc32c(data)

with CRC32C and its LevelDB-style masking from :mod:`flax_musicvae.io.crc32c`. This is
the framing of Magenta's NoteSequence collections
(``flax_musicvae.pipelines.note_sequence_io``) and of TensorBoard event files. Reads
verify both checksums.
"""

from __future__ import annotations

import os
import struct
from typing import BinaryIO, Iterable, Iterator

from flax_musicvae.io import crc32c

_LENGTH = struct.Struct("<Q")
_CRC = struct.Struct("<I")
_HEADER_SIZE = _LENGTH.size + _CRC.size


class TFRecordCorruptionError(ValueError):
  """A TFRecord file is truncated or fails a checksum."""


def _masked_crc(data: bytes) -> bytes:
  return _CRC.pack(crc32c.mask(crc32c.value(data)))


def frame(record: bytes) -> bytes:
  """``record`` framed as one TFRecord (length, its checksum, data, its checksum)."""
  length = _LENGTH.pack(len(record))
  return length + _masked_crc(length) + record + _masked_crc(record)


class TFRecordWriter:
  """Writes records to an uncompressed TFRecord file (context manager)."""

  def __init__(self, path: str | os.PathLike):
    self._path = os.fspath(path)
    self._file: BinaryIO = open(self._path, "wb")

  def write(self, record: bytes) -> None:
    self._file.write(frame(record))

  def close(self) -> None:
    self._file.close()

  def __enter__(self) -> "TFRecordWriter":
    return self

  def __exit__(self, *exc_info) -> None:
    self.close()


def _read_exact(f: BinaryIO, size: int, path: str, index: int, what: str) -> bytes:
  data = f.read(size)
  if len(data) != size:
    raise TFRecordCorruptionError(
        f"{path}: record {index} is truncated ({what}: expected {size} bytes, "
        f"got {len(data)})")
  return data


def _check_crc(data: bytes, stored: bytes, path: str, index: int, what: str) -> None:
  if _masked_crc(data) != stored:
    raise TFRecordCorruptionError(
        f"{path}: record {index} has a bad CRC32C on its {what} "
        f"(stored 0x{_CRC.unpack(stored)[0]:08x}, computed "
        f"0x{_CRC.unpack(_masked_crc(data))[0]:08x}); the file is corrupt")


def iter_records(path: str | os.PathLike, verify: bool = True) -> Iterator[bytes]:
  """Yields the records of an uncompressed TFRecord file.

  Raises:
    TFRecordCorruptionError: a record is truncated or (with ``verify``) fails
      its length or data checksum; the message names the file and record index.
  """
  path = os.fspath(path)
  with open(path, "rb") as f:
    yield from read_records(f, path, verify)


def read_records(f: BinaryIO, path: str, verify: bool = True) -> Iterator[bytes]:
  """Yields the records of an open TFRecord file (as :func:`iter_records`; ``path`` names
  it in errors)."""
  index = 0
  while header := f.read(_HEADER_SIZE):
    if len(header) != _HEADER_SIZE:
      raise TFRecordCorruptionError(
          f"{path}: record {index} is truncated (header: expected "
          f"{_HEADER_SIZE} bytes, got {len(header)})")
    length, length_crc = header[:_LENGTH.size], header[_LENGTH.size:]
    if verify:
      _check_crc(length, length_crc, path, index, "length")
    size = _LENGTH.unpack(length)[0]
    data = _read_exact(f, size, path, index, "data")
    data_crc = _read_exact(f, _CRC.size, path, index, "data checksum")
    if verify:
      _check_crc(data, data_crc, path, index, "data")
    yield data
    index += 1


def write_records(path: str | os.PathLike, records: Iterable[bytes]) -> int:
  """Writes ``records`` to a new TFRecord file; returns how many were written."""
  count = 0
  with TFRecordWriter(path) as writer:
    for record in records:
      writer.write(record)
      count += 1
  return count
