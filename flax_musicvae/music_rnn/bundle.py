"""Magenta ``.mag`` generator bundles, read and written without TensorFlow.

A bundle is a ``GeneratorBundle`` protobuf (note_seq's ``generator.proto``):
``generator_details {id, description}``, ``bundle_details {description}``,
``checkpoint_file[0]`` (the bytes of a TF **V1** checkpoint, one file) and
``metagraph_file`` (the generate graph's ``MetaGraphDef``; not needed here).

The V1 checkpoint (``tf.train.Saver(write_version=V1)``) is a LevelDB SSTable (read with
:mod:`flax_musicvae.checkpoints.tensor_bundle`'s table reader): key ``""`` holds a
``SavedTensorSlices`` whose ``meta`` lists every tensor (name, shape, dtype, slices);
every other key (an OrderedCode of name + slice) holds a ``SavedTensorSlices`` whose
``data`` is a ``SavedSlice {name, slice, data: TensorProto}``. Protobufs are parsed by
hand (wire format).
"""

from __future__ import annotations

import dataclasses
import os
import struct

import numpy as np
from note_seq.protobuf import generator_pb2

from flax_musicvae.checkpoints import tensor_bundle as tb

# TF DataType enum -> numpy (the ones MusicRNN checkpoints hold).
_DTYPES = {1: np.float32, 2: np.float64, 3: np.int32, 9: np.int64}
# TensorProto field holding each dtype's repeated values.
_VALUE_FIELDS = {1: (5, "<f", 5), 2: (6, "<d", 1), 3: (7, None, 0), 9: (10, None, 0)}


class BundleError(ValueError):
  """Not a readable generator bundle / V1 checkpoint."""


@dataclasses.dataclass
class GeneratorBundle:
  generator_id: str
  generator_description: str
  bundle_description: str
  tensors: dict[str, np.ndarray]
  metagraph: bytes = b""


def _fields(buf: bytes):
  try:
    yield from tb._proto_fields(buf)  # pylint: disable=protected-access
  except tb.CheckpointError as e:
    raise BundleError(f"corrupt protobuf in the checkpoint: {e}") from e


def _extents(slice_buf: bytes, rank: int) -> list[tuple[int, int | None]]:
  """``TensorSliceProto`` -> [(start, length or None = the whole dim)] (full if empty)."""
  out = []
  for field, value in _fields(slice_buf):
    if field == 1:
      ext = dict(_fields(value))
      out.append((tb._to_int64(ext.get(1, 0)),  # pylint: disable=protected-access
                  tb._to_int64(ext[2]) if 2 in ext else None))  # pylint: disable=protected-access
  return out or [(0, None)] * rank


def _tensor_values(proto: bytes, dtype: int) -> np.ndarray:
  field_no, fmt, fixed_wire = _VALUE_FIELDS[dtype]
  content, values = None, []
  pos = 0
  while pos < len(proto):
    tag, pos = tb._read_varint(proto, pos)  # pylint: disable=protected-access
    field, wire = tag >> 3, tag & 7
    if wire == 2:
      length, pos = tb._read_varint(proto, pos)  # pylint: disable=protected-access
      chunk, pos = proto[pos:pos + length], pos + length
      if field == 4:
        content = chunk
      elif field == field_no:   # packed repeated values
        if fmt:
          values.extend(struct.unpack(f"<{len(chunk) // struct.calcsize(fmt)}{fmt[1]}",
                                      chunk))
        else:
          p = 0
          while p < len(chunk):
            v, p = tb._read_varint(chunk, p)  # pylint: disable=protected-access
            values.append(tb._to_int64(v))  # pylint: disable=protected-access
    elif wire == 0:
      v, pos = tb._read_varint(proto, pos)  # pylint: disable=protected-access
      if field == field_no:
        values.append(tb._to_int64(v))  # pylint: disable=protected-access
    elif wire == 5:
      if field == field_no and fmt == "<f":
        values.append(struct.unpack_from("<f", proto, pos)[0])
      pos += 4
    elif wire == 1:
      if field == field_no and fmt == "<d":
        values.append(struct.unpack_from("<d", proto, pos)[0])
      pos += 8
    else:
      raise BundleError(f"unsupported wire type {wire} in a TensorProto")
  if content is not None:
    return np.frombuffer(content, _DTYPES[dtype]).copy()
  return np.asarray(values, _DTYPES[dtype])


def read_v1_checkpoint(data: bytes) -> dict[str, np.ndarray]:
  """All numeric tensors of a TF V1 (``SavedTensorSlices`` SSTable) checkpoint."""
  try:
    items = list(tb._table_items(data))  # pylint: disable=protected-access
  except tb.CheckpointError as e:
    raise BundleError(f"not a TF V1 checkpoint: {e}") from e
  meta: dict[str, tuple[tuple[int, ...], int]] = {}
  slices = []
  for key, value in items:
    for field, payload in _fields(value):
      if key == b"" and field == 1:
        for f2, tensor in _fields(payload):
          if f2 != 1:
            continue
          t = dict((f, v) for f, v in _fields(tensor) if f in (1, 2, 3))
          meta[t[1].decode()] = (tb._parse_shape(t.get(2, b"")),  # pylint: disable=protected-access
                                 t.get(3, 1))
      elif field == 2:
        s = {f: v for f, v in _fields(payload)}
        slices.append((s[1].decode(), s.get(2, b""), s.get(3, b"")))
  if not meta:
    raise BundleError("the checkpoint has no tensor metadata (empty key)")
  out: dict[str, np.ndarray] = {}
  for name, slice_buf, proto in slices:
    shape, dtype = meta[name]
    if dtype not in _DTYPES:
      continue   # strings etc.: not model weights
    values = _tensor_values(proto, dtype)
    ext = _extents(slice_buf, len(shape))
    index = tuple(slice(s, None if n is None else s + n) for s, n in ext)
    sub_shape = tuple((d if n is None else n) for (s, n), d in zip(ext, shape))
    if values.size != int(np.prod(sub_shape)):
      raise BundleError(f"{name}: {values.size} values for a slice of shape {sub_shape}")
    full = out.setdefault(name, np.zeros(shape, _DTYPES[dtype]))
    full[index] = values.reshape(sub_shape)
  return out


def _ordered_key(name: str, rank: int) -> bytes:
  """TF's ``EncodeTensorNameSlice`` for a full slice (OrderedCode)."""
  if b"\x00" in name.encode() or b"\xff" in name.encode():
    raise BundleError(f"tensor name {name!r} needs OrderedCode escaping")
  return (b"\x00" + name.encode() + b"\x00\x01" + bytes([1, rank]) + b"\x80\x7f" * rank
          if rank else b"\x00" + name.encode() + b"\x00\x01\x00")


def write_v1_checkpoint(tensors: dict[str, np.ndarray]) -> bytes:
  """A V1 checkpoint (what ``Saver(write_version=V1)`` writes) of float32 tensors."""
  enc = tb._encode_field  # pylint: disable=protected-access
  metas, items = b"", []
  for name in sorted(tensors):
    value = np.asarray(tensors[name], np.float32)
    shape = b"".join(enc(2, enc(1, d)) for d in value.shape)
    full_slice = b"".join(enc(1, b"") for _ in value.shape)
    metas += enc(1, enc(1, name.encode()) + enc(2, shape) + enc(3, 1) + enc(4, full_slice))
    tensor = enc(5, value.astype("<f4").tobytes())
    saved = enc(1, name.encode()) + enc(2, full_slice) + enc(3, tensor)
    items.append((_ordered_key(name, value.ndim), enc(2, saved)))
  header = enc(1, metas + enc(2, enc(1, 1)))   # meta {tensor..., versions {producer: 1}}
  return tb._build_table([(b"", header)] + items)  # pylint: disable=protected-access


def read_bundle(path: str | os.PathLike) -> GeneratorBundle:
  """Parses a ``.mag`` file; its checkpoint's tensors are read without TensorFlow."""
  with open(path, "rb") as f:
    raw = f.read()
  try:
    proto = generator_pb2.GeneratorBundle.FromString(raw)
  except Exception as e:  # pylint: disable=broad-except
    raise BundleError(f"{path} is not a GeneratorBundle: {e}") from e
  if not proto.checkpoint_file:
    raise BundleError(f"{path} holds no checkpoint (not a generator bundle?)")
  if len(proto.checkpoint_file) != 1:
    raise BundleError(f"{path}: expected one checkpoint file, got "
                      f"{len(proto.checkpoint_file)}")
  return GeneratorBundle(proto.generator_details.id, proto.generator_details.description,
                         proto.bundle_details.description,
                         read_v1_checkpoint(proto.checkpoint_file[0]), proto.metagraph_file)


def write_bundle(path: str | os.PathLike, generator_id: str, tensors: dict[str, np.ndarray],
                 *, generator_description: str = "", bundle_description: str = "",
                 metagraph: bytes = b"") -> None:
  """A ``.mag`` laid out as Magenta's ``SequenceGenerator.create_bundle_file`` writes it."""
  proto = generator_pb2.GeneratorBundle()
  proto.generator_details.id = generator_id
  proto.generator_details.description = generator_description
  proto.bundle_details.description = bundle_description
  proto.checkpoint_file.append(write_v1_checkpoint(tensors))
  proto.metagraph_file = metagraph
  with open(path, "wb") as f:
    f.write(proto.SerializeToString())
