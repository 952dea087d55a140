"""TensorFlow TensorBundle checkpoints (``<prefix>.index`` + ``.data-*``) without TensorFlow.

Format (what ``tf.train.Saver`` / ``tf.train.Checkpoint`` write):

* ``<prefix>.index`` is a LevelDB-style SSTable. Each block holds prefix-compressed
  entries ``varint shared, varint non_shared, varint value_len, key_delta, value``,
  then a ``uint32`` restart array and its length, and is followed by a 5-byte
  trailer (compression byte + masked CRC32C of contents and that byte). The last
  48 bytes are the footer: metaindex and index block handles (varint offset and
  size), zero padding to 40 bytes, and the magic number. The index block maps a
  separator key to each data block's handle.
* Key ``""`` holds a ``BundleHeaderProto`` (num_shards, endianness, version); every
  other key is a variable name whose value is a ``BundleEntryProto`` (dtype, shape,
  shard_id, offset, size, masked crc32c of the bytes).
* ``<prefix>.data-%05d-of-%05d`` shards hold the raw little-endian tensor bytes.

The small protobufs are parsed and written by hand (wire format) so neither
TensorFlow nor its protos are needed.
"""

from __future__ import annotations

import codecs
import contextlib
import dataclasses
import glob
import os
import re
import struct
import tarfile
import tempfile
from typing import BinaryIO, Iterator, Mapping

import ml_dtypes
import numpy as np

from flax_musicvae.io import crc32c

_TABLE_MAGIC = 0xDB4775248B80FB57
_FOOTER_SIZE = 48
_BLOCK_TRAILER_SIZE = 5
_RESTART_INTERVAL = 16
_BUNDLE_VERSION = 1
_DT_STRING = 7

# TensorFlow DataType enum -> numpy dtype (types.proto).
_DTYPES: dict[int, np.dtype] = {
    1: np.dtype(np.float32), 2: np.dtype(np.float64), 3: np.dtype(np.int32),
    4: np.dtype(np.uint8), 5: np.dtype(np.int16), 6: np.dtype(np.int8),
    8: np.dtype(np.complex64), 9: np.dtype(np.int64), 10: np.dtype(np.bool_),
    14: np.dtype(ml_dtypes.bfloat16), 17: np.dtype(np.uint16),
    18: np.dtype(np.complex128), 19: np.dtype(np.float16), 22: np.dtype(np.uint32),
    23: np.dtype(np.uint64),
}
_DTYPE_ENUMS = {dtype: enum for enum, dtype in _DTYPES.items()}


class CheckpointError(ValueError):
  """A checkpoint is missing, corrupt or uses an unsupported feature."""


@dataclasses.dataclass(frozen=True)
class BundleEntry:
  """One ``BundleEntryProto``: where a tensor lives and how to decode it."""
  dtype: int
  shape: tuple[int, ...]
  shard_id: int = 0
  offset: int = 0
  size: int = 0
  crc32c: int = 0
  sliced: bool = False

  @property
  def numpy_dtype(self) -> np.dtype:
    if self.dtype == _DT_STRING:
      return np.dtype(object)
    if self.dtype not in _DTYPES:
      raise CheckpointError(f"unsupported TensorFlow dtype enum {self.dtype}")
    return _DTYPES[self.dtype]


# --------------------------------------------------------------------------------------
# Protobuf wire format.


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
  result = shift = 0
  while True:
    if pos >= len(buf):
      raise CheckpointError("truncated varint")
    b = buf[pos]
    pos += 1
    result |= (b & 0x7F) << shift
    if not b & 0x80:
      return result, pos
    shift += 7
    if shift > 63:
      raise CheckpointError("varint longer than 64 bits")


def _varint(value: int) -> bytes:
  out = bytearray()
  while True:
    b = value & 0x7F
    value >>= 7
    if value:
      out.append(b | 0x80)
    else:
      out.append(b)
      return bytes(out)


def _proto_fields(buf: bytes) -> Iterator[tuple[int, int | bytes]]:
  """Yields (field number, value) for varint, fixed and length-delimited fields."""
  pos = 0
  while pos < len(buf):
    tag, pos = _read_varint(buf, pos)
    field, wire = tag >> 3, tag & 7
    if wire == 0:
      value, pos = _read_varint(buf, pos)
    elif wire == 1:
      value, pos = int.from_bytes(buf[pos:pos + 8], "little"), pos + 8
    elif wire == 5:
      value, pos = int.from_bytes(buf[pos:pos + 4], "little"), pos + 4
    elif wire == 2:
      length, pos = _read_varint(buf, pos)
      value, pos = buf[pos:pos + length], pos + length
    else:
      raise CheckpointError(f"unsupported protobuf wire type {wire}")
    if pos > len(buf):
      raise CheckpointError("truncated protobuf message")
    yield field, value


def _to_int64(value: int) -> int:
  return value - (1 << 64) if value >= 1 << 63 else value


def _parse_shape(buf: bytes) -> tuple[int, ...]:
  dims = []
  for field, value in _proto_fields(buf):
    if field == 2:  # TensorShapeProto.dim
      size = dict(_proto_fields(value)).get(1, 0)
      dims.append(_to_int64(size))
    elif field == 3 and value:
      raise CheckpointError("checkpoint tensor has unknown rank")
  return tuple(dims)


def _parse_entry(buf: bytes) -> BundleEntry:
  fields: dict[str, object] = {}
  names = {1: "dtype", 3: "shard_id", 4: "offset", 5: "size", 6: "crc32c"}
  for field, value in _proto_fields(buf):
    if field == 2:
      fields["shape"] = _parse_shape(value)
    elif field == 7:
      fields["sliced"] = True
    elif field in names:
      fields[names[field]] = value
  fields.setdefault("shape", ())
  if "dtype" not in fields:
    raise CheckpointError("BundleEntryProto without dtype")
  return BundleEntry(**fields)


def _encode_field(field: int, value: int | bytes) -> bytes:
  if isinstance(value, bytes):
    return _varint(field << 3 | 2) + _varint(len(value)) + value
  return _varint(field << 3) + _varint(value)


def _encode_entry(entry: BundleEntry) -> bytes:
  shape = b"".join(_encode_field(2, _encode_field(1, d)) for d in entry.shape)
  out = _encode_field(1, entry.dtype) + _encode_field(2, shape)
  for field, value in ((3, entry.shard_id), (4, entry.offset), (5, entry.size)):
    if value:
      out += _encode_field(field, value)
  return out + _varint(6 << 3 | 5) + struct.pack("<I", entry.crc32c)


def _encode_header() -> bytes:
  # num_shards = 1, endianness = LITTLE (default, omitted), version {producer: 1}.
  return _encode_field(1, 1) + _encode_field(3, _encode_field(1, _BUNDLE_VERSION))


# --------------------------------------------------------------------------------------
# SSTable (LevelDB table) reading and writing.


def _read_block(data: bytes, offset: int, size: int) -> bytes:
  end = offset + size
  if end + _BLOCK_TRAILER_SIZE > len(data) - _FOOTER_SIZE:
    raise CheckpointError("block handle points past the end of the index (truncated file?)")
  contents = data[offset:end]
  ctype = data[end]
  (stored,) = struct.unpack_from("<I", data, end + 1)
  if crc32c.unmask(stored) != crc32c.value(data[offset:end + 1]):
    raise CheckpointError(f"index block at offset {offset} fails its CRC32C check (corrupt file)")
  if ctype != 0:
    raise CheckpointError(f"compressed index blocks (type {ctype}) are not supported")
  return contents


def _block_entries(block: bytes) -> Iterator[tuple[bytes, bytes]]:
  if len(block) < 4:
    raise CheckpointError("index block too short")
  (num_restarts,) = struct.unpack_from("<I", block, len(block) - 4)
  limit = len(block) - 4 * (num_restarts + 1)
  if limit < 0:
    raise CheckpointError("index block restart array is corrupt")
  pos, key = 0, b""
  while pos < limit:
    shared, pos = _read_varint(block, pos)
    non_shared, pos = _read_varint(block, pos)
    value_len, pos = _read_varint(block, pos)
    if shared > len(key) or pos + non_shared + value_len > limit:
      raise CheckpointError("index block entry is corrupt")
    key = key[:shared] + block[pos:pos + non_shared]
    pos += non_shared
    yield key, block[pos:pos + value_len]
    pos += value_len


def _read_handle(buf: bytes, pos: int = 0) -> tuple[int, int, int]:
  offset, pos = _read_varint(buf, pos)
  size, pos = _read_varint(buf, pos)
  return offset, size, pos


def _table_items(data: bytes) -> Iterator[tuple[bytes, bytes]]:
  if len(data) < _FOOTER_SIZE:
    raise CheckpointError(f"index file is {len(data)} bytes, shorter than an SSTable footer")
  footer = data[-_FOOTER_SIZE:]
  if struct.unpack("<Q", footer[-8:])[0] != _TABLE_MAGIC:
    raise CheckpointError("index file has no SSTable magic number (not a checkpoint index)")
  _, _, pos = _read_handle(footer)  # metaindex: unused by TensorBundle
  index_offset, index_size, _ = _read_handle(footer, pos)
  for _, handle in _block_entries(_read_block(data, index_offset, index_size)):
    offset, size, _ = _read_handle(handle)
    yield from _block_entries(_read_block(data, offset, size))


def _build_block(items: list[tuple[bytes, bytes]]) -> bytes:
  out, restarts, prev = bytearray(), [], b""
  for i, (key, value) in enumerate(items):
    shared = 0
    if i % _RESTART_INTERVAL == 0:
      restarts.append(len(out))
    else:
      shared = len(os.path.commonprefix([prev, key]))
    out += _varint(shared) + _varint(len(key) - shared) + _varint(len(value))
    out += key[shared:] + value
    prev = key
  restarts = restarts or [0]
  out += struct.pack(f"<{len(restarts)}I", *restarts) + struct.pack("<I", len(restarts))
  return bytes(out)


def _with_trailer(block: bytes) -> bytes:
  body = block + b"\x00"  # no compression
  return body + struct.pack("<I", crc32c.mask(crc32c.value(body)))


def _short_successor(key: bytes) -> bytes:
  """LevelDB's bytewise ``FindShortSuccessor``: the index separator after the last key."""
  for i, b in enumerate(key):
    if b != 0xFF:
      return key[:i] + bytes([b + 1])
  return key


def _build_table(items: list[tuple[bytes, bytes]]) -> bytes:
  """An SSTable holding ``items`` (sorted by key) in a single data block."""
  data_block = _build_block(items)
  out = _with_trailer(data_block)
  meta_handle = _varint(len(out)) + _varint(8)
  out += _with_trailer(_build_block([]))
  data_handle = _varint(0) + _varint(len(data_block))
  index_block = _build_block([(_short_successor(items[-1][0]), data_handle)])
  index_handle = _varint(len(out)) + _varint(len(index_block))
  out += _with_trailer(index_block)
  handles = meta_handle + index_handle
  return out + handles + bytes(40 - len(handles)) + struct.pack("<Q", _TABLE_MAGIC)


# --------------------------------------------------------------------------------------
# Reading.


def data_filename(prefix: str, shard: int, num_shards: int) -> str:
  return f"{prefix}.data-{shard:05d}-of-{num_shards:05d}"


class BundleReader:
  """Reads the tensors of one checkpoint prefix; use as a context manager."""

  def __init__(self, prefix: str, verify_checksums: bool = True):
    self.prefix = prefix
    self.verify_checksums = verify_checksums
    index_path = prefix + ".index"
    if not os.path.isfile(index_path):
      raise CheckpointError(f"checkpoint index not found: {index_path}")
    with open(index_path, "rb") as f:
      items = list(_table_items(f.read()))
    if not items or items[0][0] != b"":
      raise CheckpointError(f"{index_path}: first entry is not the bundle header")
    self.num_shards, self.byteorder = self._parse_header(items[0][1])
    # Keys starting with NUL hold the slices of partitioned variables (unsupported).
    self.entries = {k.decode("utf-8"): _parse_entry(v) for k, v in items[1:]
                    if not k.startswith(b"\x00")}
    self._files: dict[int, BinaryIO] = {}

  @staticmethod
  def _parse_header(buf: bytes) -> tuple[int, str]:
    fields = dict(_proto_fields(buf))
    version = dict(_proto_fields(fields.get(3, b"")))
    if version.get(2, 0) > _BUNDLE_VERSION:
      raise CheckpointError(f"checkpoint needs bundle reader version >= {version[2]}")
    return fields.get(1, 0), ">" if fields.get(2, 0) == 1 else "<"

  def variables(self) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Name -> (shape, numpy dtype) for every tensor, without reading data."""
    return {k: (e.shape, e.numpy_dtype) for k, e in self.entries.items()}

  def _shard(self, shard_id: int) -> BinaryIO:
    if shard_id not in self._files:
      path = data_filename(self.prefix, shard_id, self.num_shards)
      if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint data shard not found: {path}")
      self._files[shard_id] = open(path, "rb")
    return self._files[shard_id]

  def read(self, name: str) -> np.ndarray:
    """One tensor; string tensors come back as an object array of ``bytes``."""
    if name not in self.entries:
      raise KeyError(f"{name!r} not in checkpoint {self.prefix}")
    entry = self.entries[name]
    if entry.sliced:
      raise CheckpointError(f"{name} is a partitioned (sliced) variable; these are not "
                            "supported (Magenta's models do not use them)")
    f = self._shard(entry.shard_id)
    f.seek(entry.offset)
    raw = f.read(entry.size)
    if len(raw) != entry.size:
      raise CheckpointError(f"{name}: data shard is truncated")
    if entry.dtype == _DT_STRING:
      array, crc = self._decode_strings(name, raw, entry.shape)
    else:
      array, crc = self._decode_numeric(name, raw, entry), crc32c.value(raw)
    if self.verify_checksums and crc != crc32c.unmask(entry.crc32c):
      raise CheckpointError(f"{name}: data fails its CRC32C check (corrupt checkpoint)")
    return array

  def _decode_numeric(self, name: str, raw: bytes, entry: BundleEntry) -> np.ndarray:
    dtype = entry.numpy_dtype.newbyteorder(self.byteorder)
    count = int(np.prod(entry.shape, dtype=np.int64))
    if count * dtype.itemsize != entry.size:
      raise CheckpointError(
          f"{name}: {entry.size} bytes do not hold shape {entry.shape} of {dtype}")
    return np.frombuffer(raw, dtype=dtype).astype(dtype.newbyteorder("=")).reshape(entry.shape)

  def _decode_strings(self, name: str, raw: bytes, shape: tuple[int, ...]
                      ) -> tuple[np.ndarray, int]:
    """Decodes ``[varint64 lengths][masked crc of lengths][bytes]``; returns the CRC32C
    TensorFlow stores for it (over lengths as uint32/uint64, that checksum, the bytes)."""
    count = int(np.prod(shape, dtype=np.int64))
    lengths, pos, crc = [], 0, 0
    for _ in range(count):
      n, pos = _read_varint(raw, pos)
      lengths.append(n)
      crc = crc32c.extend(crc, struct.pack("<I" if n <= 0xFFFFFFFF else "<Q", n))
    if pos + 4 + sum(lengths) != len(raw):
      raise CheckpointError(f"{name}: string tensor sizes do not match its entry")
    (stored,) = struct.unpack_from("<I", raw, pos)
    if self.verify_checksums and crc32c.unmask(stored) != crc:
      raise CheckpointError(f"{name}: string lengths fail their CRC32C check")
    crc = crc32c.extend(crc, raw[pos:])  # the length checksum and every string's bytes
    pos += 4
    out = np.empty(count, dtype=object)
    for i, n in enumerate(lengths):
      out[i], pos = raw[pos:pos + n], pos + n
    return out.reshape(shape), crc

  def read_all(self, skip_strings: bool = False) -> dict[str, np.ndarray]:
    return {name: self.read(name) for name, e in self.entries.items()
            if not (skip_strings and e.dtype == _DT_STRING)}

  def close(self) -> None:
    for f in self._files.values():
      f.close()
    self._files.clear()

  def __enter__(self) -> "BundleReader":
    return self

  def __exit__(self, *exc) -> None:
    self.close()


def _prefix_from_state_file(directory: str) -> str | None:
  """The ``model_checkpoint_path`` of ``<dir>/checkpoint`` (relocated if moved)."""
  state = os.path.join(directory, "checkpoint")
  if not os.path.isfile(state):
    return None
  with open(state, encoding="utf-8") as f:
    match = re.search(r'^model_checkpoint_path:\s*"((?:[^"\\]|\\.)*)"', f.read(), re.M)
  if not match:
    raise CheckpointError(f"{state} has no model_checkpoint_path")
  # Text-format C escapes (\" \\ \ooo) of UTF-8 bytes.
  path = codecs.escape_decode(match.group(1).encode("utf-8"))[0].decode("utf-8")
  candidate = path if os.path.isabs(path) else os.path.join(directory, path)
  if os.path.isfile(candidate + ".index"):
    return candidate
  # The directory was moved since it was written: look next to the state file.
  return os.path.join(directory, os.path.basename(path))


def _single_prefix(directory: str, indexes: list[str], what: str) -> str:
  if len(indexes) != 1:
    found = ", ".join(sorted(os.path.basename(p) for p in indexes)) or "none"
    raise CheckpointError(f"{what} must hold exactly one checkpoint (*.index); found: {found}")
  return os.path.join(directory, indexes[0][:-len(".index")])


def _prefix_in_directory(directory: str) -> str:
  prefix = _prefix_from_state_file(directory)
  if prefix is not None:
    return prefix
  indexes = [os.path.basename(p) for p in glob.glob(os.path.join(directory, "*.index"))]
  return _single_prefix(directory, indexes, f"directory {directory} (no 'checkpoint' file)")


def _extract_tar(path: str, directory: str) -> str:
  with tarfile.open(path) as tar:
    members = [m for m in tar.getmembers() if m.isfile()]
    tar.extractall(directory, members=members, filter="data")
  indexes = [m.name for m in members if m.name.endswith(".index")]
  return _single_prefix(directory, indexes, f"tar bundle {path}")


@contextlib.contextmanager
def open_checkpoint(path: str | os.PathLike, verify_checksums: bool = True
                    ) -> Iterator[BundleReader]:
  """Opens a checkpoint given as prefix, ``.index``/``.data-*`` file, directory or ``.tar``.

  A directory is resolved through its ``checkpoint`` state file (or its only
  ``*.index``); a tar bundle (Magenta's published format) is unpacked to a
  temporary directory that lives as long as the reader.
  """
  path = os.fspath(path)
  with contextlib.ExitStack() as stack:
    if os.path.isdir(path):
      prefix = _prefix_in_directory(path)
    elif os.path.isfile(path) and tarfile.is_tarfile(path):
      prefix = _extract_tar(path, stack.enter_context(tempfile.TemporaryDirectory()))
    else:
      prefix = re.sub(r"\.(index|data-\d{5}-of-\d{5})$", "", path)
    reader = stack.enter_context(BundleReader(prefix, verify_checksums))
    yield reader


def read_checkpoint(path: str | os.PathLike, verify_checksums: bool = True,
                    skip_strings: bool = False) -> dict[str, np.ndarray]:
  """All tensors of a checkpoint (see :func:`open_checkpoint` for ``path``)."""
  with open_checkpoint(path, verify_checksums) as reader:
    return reader.read_all(skip_strings)


def list_variables(path: str | os.PathLike) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
  """Name -> (shape, dtype) of every tensor, like ``tf.train.list_variables``."""
  with open_checkpoint(path) as reader:
    return reader.variables()


# --------------------------------------------------------------------------------------
# Writing.


def write_checkpoint(prefix: str | os.PathLike, tensors: Mapping[str, np.ndarray],
                     write_state_file: bool = True) -> str:
  """Writes ``tensors`` as a single-shard TensorBundle at ``prefix``; returns the prefix.

  The result restores with ``tf.train.load_checkpoint`` / ``tf.compat.v1.train.Saver``.
  With ``write_state_file`` a ``checkpoint`` file pointing at it is written next to
  it so the directory works with ``tf.train.latest_checkpoint``.
  """
  prefix = os.fspath(prefix)
  if not tensors:
    raise ValueError("write_checkpoint needs at least one tensor")
  directory = os.path.dirname(prefix) or "."
  os.makedirs(directory, exist_ok=True)
  items, offset = [(b"", _encode_header())], 0
  with open(data_filename(prefix, 0, 1), "wb") as data:
    for name in sorted(tensors, key=lambda n: n.encode("utf-8")):
      array = np.asarray(tensors[name])
      dtype = array.dtype.newbyteorder("=")
      if dtype not in _DTYPE_ENUMS:
        raise ValueError(f"{name}: dtype {array.dtype} cannot be written to a checkpoint")
      raw = np.ascontiguousarray(array, dtype=dtype.newbyteorder("<")).tobytes()
      data.write(raw)
      entry = BundleEntry(dtype=_DTYPE_ENUMS[dtype], shape=array.shape, offset=offset,
                          size=len(raw), crc32c=crc32c.mask(crc32c.value(raw)))
      items.append((name.encode("utf-8"), _encode_entry(entry)))
      offset += len(raw)
  with open(prefix + ".index", "wb") as f:
    f.write(_build_table(items))
  if write_state_file:
    name = os.path.basename(prefix)
    with open(os.path.join(directory, "checkpoint"), "w", encoding="utf-8") as f:
      f.write(f'model_checkpoint_path: "{name}"\nall_model_checkpoint_paths: "{name}"\n')
  return prefix
