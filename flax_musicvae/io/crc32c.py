"""CRC32C (Castagnoli) and LevelDB/TensorFlow checksum masking, in numpy.

Large buffers are split into ``K`` equal lanes whose CRC registers are advanced
together one 16-bit word column at a time (a 65536-entry table); the lane results
are then merged pairwise with the "append n zero bytes" operator (CRC is linear
over GF(2)). This keeps checkpoints of hundreds of MB fast without a compiled
extension.
"""

from __future__ import annotations

import functools

import numpy as np

_POLY = 0x82F63B78  # reflected Castagnoli polynomial
_MASK_DELTA = 0xA282EAD8
_MIN_LANE_BYTES = 32768


def _make_table() -> np.ndarray:
  crc = np.arange(256, dtype=np.uint32)
  for _ in range(8):
    crc = np.where(crc & 1, (crc >> 1) ^ np.uint32(_POLY), crc >> 1).astype(np.uint32)
  return crc


_TABLE = _make_table()
_TABLE_LIST = _TABLE.tolist()


def _make_table16() -> np.ndarray:
  """Register x (< 2**16) advanced over two zero bytes: one lookup per 16-bit word, since
  advancing ``reg`` over word ``w`` is ``table16[(reg ^ w) & 0xFFFF] ^ (reg >> 16)``."""
  reg = np.arange(1 << 16, dtype=np.uint32)
  for _ in range(2):
    reg = _TABLE[reg & 0xFF] ^ (reg >> 8)
  return reg


_TABLE16 = _make_table16()


def _update_scalar(reg: int, data: bytes) -> int:
  table = _TABLE_LIST
  for b in data:
    reg = table[(reg ^ b) & 0xFF] ^ (reg >> 8)
  return reg


def _update_lanes(reg: np.ndarray, columns: np.ndarray) -> np.ndarray:
  """Advances K registers over ``columns`` ([L, K] little-endian uint16 words)."""
  for col in columns:
    reg = _TABLE16[(reg ^ col) & 0xFFFF] ^ (reg >> 16)
  return reg


def _apply(op: np.ndarray, reg: np.ndarray) -> np.ndarray:
  """Applies a linear register operator stored as four 256-entry byte tables."""
  return (op[0][reg & 0xFF] ^ op[1][(reg >> 8) & 0xFF] ^ op[2][(reg >> 16) & 0xFF]
          ^ op[3][reg >> 24])


def _compose(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """Operator ``a`` after ``b``."""
  return _apply(a, b)


@functools.lru_cache(maxsize=512)
def _zeros_operator(n: int) -> np.ndarray:
  """The operator that advances a register over ``n`` zero bytes."""
  basis = (np.arange(256, dtype=np.uint32)[None, :] << (8 * np.arange(4, dtype=np.uint32))[:, None])
  one = _TABLE[basis & 0xFF] ^ (basis >> 8)
  result = basis.copy()
  while n:
    if n & 1:
      result = _compose(one, result)
    one = _compose(one, one)
    n >>= 1
  return result


def _num_lanes(size: int) -> int:
  """A power of two near sqrt(size) so per-column numpy overhead stays small."""
  return 1 << max(0, (int(np.sqrt(size)) * 2).bit_length() - 1)


def extend(crc: int, data: bytes | bytearray | memoryview | np.ndarray) -> int:
  """Extends ``crc`` (a finished CRC32C value) over ``data``."""
  buf = np.frombuffer(memoryview(data).cast("B"), dtype=np.uint8)
  reg = crc ^ 0xFFFFFFFF
  if buf.size < _MIN_LANE_BYTES:
    return _update_scalar(reg, buf.tobytes()) ^ 0xFFFFFFFF
  lanes = _num_lanes(buf.size)
  lane_len = buf.size // lanes & ~1  # whole 16-bit words per lane
  body = buf[:lanes * lane_len].view("<u2").reshape(lanes, lane_len // 2)
  regs = np.zeros(lanes, dtype=np.uint32)
  regs[0] = reg
  regs = _update_lanes(regs, np.ascontiguousarray(body.T))
  span = lane_len
  while regs.size > 1:
    regs = _apply(_zeros_operator(span), regs[0::2]) ^ regs[1::2]
    span *= 2
  reg = _update_scalar(int(regs[0]), buf[lanes * lane_len:].tobytes())
  return reg ^ 0xFFFFFFFF


def value(data: bytes | bytearray | memoryview | np.ndarray) -> int:
  """CRC32C of ``data``."""
  return extend(0, data)


def mask(crc: int) -> int:
  """LevelDB/TensorFlow masked CRC (stored in tables, bundles and TFRecords)."""
  return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + _MASK_DELTA) & 0xFFFFFFFF


def unmask(masked: int) -> int:
  rot = (masked - _MASK_DELTA) & 0xFFFFFFFF
  return ((rot >> 17) | (rot << 15)) & 0xFFFFFFFF
