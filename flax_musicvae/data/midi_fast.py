"""A small Standard MIDI File reader that reproduces what pretty_midi loads, fast.

``note_seq.midi_file_to_note_sequence`` goes through mido and pretty_midi (about
0.1-0.2 s per Groove file). ``read_midi`` decodes each track with numpy (the event
boundaries come from per-byte tables walked once; note pairing is vectorised per
pitch, with an exact per-event replay for pitches whose on/off events do not simply
alternate) and falls back to a per-event loop for unusual tracks. It applies
pretty_midi's rules: absolute ticks, tempo map from track 0 (only the last tempo at
tick 0 and later changes that alter the tempo), instruments keyed by (program,
channel, track), note-on/off pairing (a note-off closes every open note of that
pitch that started on an earlier tick; never-closed notes are dropped), control
changes and pitch bends attached to instruments, and the same float64 tick-to-seconds
table. Only what the Groove pipeline needs is kept: notes, event times for
``get_end_time`` and time signatures.
"""

from __future__ import annotations

import dataclasses
import struct

import numpy as np

#: pretty_midi's limit above which a file is considered corrupt.
MAX_TICK = 10_000_000
_CHANNEL_DATA_LENGTH = {0x80: 2, 0x90: 2, 0xA0: 2, 0xB0: 2, 0xC0: 1, 0xD0: 1, 0xE0: 2}
_SYSTEM_DATA_LENGTH = {0xF1: 1, 0xF2: 2, 0xF3: 1, 0xF6: 0, 0xF8: 0, 0xFA: 0, 0xFB: 0,
                       0xFC: 0, 0xFE: 0}
_META_TEMPO, _META_TIME_SIGNATURE, _META_KEY_SIGNATURE = 0x51, 0x58, 0x59
_META_TEXT, _META_LYRICS = 0x01, 0x05


class MidiError(ValueError):
  """The bytes are not a readable Standard MIDI File."""


@dataclasses.dataclass
class Instrument:
  """pretty_midi's Instrument: notes in its order (ticks) and its event ticks.

  Fields are lists while loading and int64 arrays once ``read_midi`` returns.
  """

  program: int
  is_drum: bool
  starts: list | np.ndarray = dataclasses.field(default_factory=list)
  ends: list | np.ndarray = dataclasses.field(default_factory=list)
  pitches: list | np.ndarray = dataclasses.field(default_factory=list)
  velocities: list | np.ndarray = dataclasses.field(default_factory=list)
  event_ticks: list | np.ndarray = dataclasses.field(default_factory=list)

  def freeze(self) -> "Instrument":
    return Instrument(self.program, self.is_drum, *(
        np.asarray(v, np.int64) for v in (self.starts, self.ends, self.pitches,
                                           self.velocities, self.event_ticks)))


@dataclasses.dataclass
class MidiData:
  """What pretty_midi.PrettyMIDI holds, in ticks."""

  resolution: int
  tick_scales: list[tuple[int, float]]
  max_tick: int
  instruments: list[Instrument]
  time_signatures: list[tuple[int, int, int]]  # (numerator, denominator, tick)
  meta_ticks: list[int]  # time/key signatures, lyrics, text

  def tick_to_time(self) -> np.ndarray:
    """pretty_midi's ``__tick_to_time`` table (same float64 operations)."""
    return tick_to_time_table(self.tick_scales, self.max_tick)

  def end_time(self, table: np.ndarray) -> float:
    """pretty_midi's ``get_end_time``."""
    times = [0.0]  # the tempo change at tick 0
    for inst in self.instruments:
      ticks = np.concatenate([inst.ends, inst.event_ticks])
      times.append(float(table[ticks.max()]) if len(ticks) else 0.0)
    times += [float(table[t]) for t in self.meta_ticks]
    times += [float(table[t]) for t, _ in self.tick_scales]
    return max(times)


def tick_to_time_table(tick_scales: list[tuple[int, float]], max_tick: int) -> np.ndarray:
  max_tick = max(max_tick, max(t for t, _ in tick_scales))
  table = np.zeros(max_tick + 1)
  last_end_time = 0
  for (start, scale), (end, _) in zip(tick_scales[:-1], tick_scales[1:]):
    table[start:end + 1] = last_end_time + scale * np.arange(end - start + 1)
    last_end_time = table[end]
  start, scale = tick_scales[-1]
  table[start:] = last_end_time + scale * np.arange(max_tick + 1 - start)
  return table


class _Reader:
  """Cursor over the bytes of one track chunk."""

  def __init__(self, data: bytes, pos: int, end: int):
    self.data, self.pos, self.end = data, pos, end

  def byte(self) -> int:
    if self.pos >= self.end:
      raise MidiError("track chunk ends in the middle of an event")
    b = self.data[self.pos]
    self.pos += 1
    return b

  def varint(self) -> int:
    value = 0
    while True:
      b = self.byte()
      value = (value << 7) | (b & 0x7F)
      if b < 0x80:
        return value

  def take(self, n: int) -> bytes:
    if self.pos + n > self.end:
      raise MidiError("track chunk ends in the middle of an event")
    chunk = self.data[self.pos:self.pos + n]
    self.pos += n
    return chunk


class _Loader:
  """pretty_midi's ``_load_instruments`` bookkeeping across tracks."""

  def __init__(self):
    self.instruments: dict[tuple[int, int, int], Instrument] = {}
    self.stragglers: dict[tuple[int, int], Instrument] = {}

  def get(self, program: int, channel: int, track: int, create: bool) -> Instrument:
    key = (program, channel, track)
    if key in self.instruments:
      return self.instruments[key]
    if not create and (channel, track) in self.stragglers:
      return self.stragglers[(channel, track)]
    if create:
      inst = Instrument(program, channel == 9)
      straggler = self.stragglers.get((channel, track))
      if straggler is not None:
        inst.event_ticks = straggler.event_ticks
      self.instruments[key] = inst
    else:
      inst = Instrument(program, False)
      self.stragglers[(channel, track)] = inst
    return inst


def _read_track(data: bytes, pos: int, end: int, index: int, loader: _Loader,
                out: MidiData) -> int:
  """Decodes one track; returns its largest tick."""
  r = _Reader(data, pos, end)
  tick, last_status = 0, None
  programs = [0] * 16
  open_notes: dict[tuple[int, int], list[tuple[int, int]]] = {}
  while r.pos < end:
    tick += r.varint()
    status = r.byte()
    first = None
    if status < 0x80:
      if last_status is None:
        raise MidiError("running status without a previous status byte")
      first, status = status, last_status
    elif status != 0xFF:
      last_status = status
    if status == 0xFF:
      kind = r.byte()
      body = r.take(r.varint())
      _meta_event(kind, body, tick, index, out)
      continue
    if status in (0xF0, 0xF7):
      r.take(r.varint())
      continue
    kind = status & 0xF0 if status < 0xF0 else status
    length = _CHANNEL_DATA_LENGTH.get(kind, _SYSTEM_DATA_LENGTH.get(kind))
    if length is None:
      raise MidiError(f"undefined status byte 0x{status:02x}")
    values = ([first] if first is not None else []) + list(
        r.take(length - (first is not None)))
    if any(v > 127 for v in values):
      raise MidiError("data byte must be in range 0..127")
    if status >= 0xF0:
      continue
    channel = status & 0x0F
    if kind == 0xC0:
      programs[channel] = values[0]
    elif kind == 0x90 and values[1] > 0:
      open_notes.setdefault((channel, values[0]), []).append((tick, values[1]))
    elif kind == 0x80 or kind == 0x90:
      key = (channel, values[0])
      notes = open_notes.get(key)
      if notes is None:
        continue
      to_close = [n for n in notes if n[0] != tick]
      for start, velocity in to_close:
        inst = loader.get(programs[channel], channel, index, True)
        inst.starts.append(start)
        inst.ends.append(tick)
        inst.pitches.append(values[0])
        inst.velocities.append(velocity)
      keep = [n for n in notes if n[0] == tick]
      if to_close and keep:
        open_notes[key] = keep
      else:
        del open_notes[key]
    elif kind in (0xB0, 0xE0):
      loader.get(programs[channel], channel, index, False).event_ticks.append(tick)
  if r.pos != end:
    raise MidiError("track chunk overruns its declared length")
  return tick


def _meta_event(kind: int, body: bytes, tick: int, track: int, out: MidiData) -> None:
  if kind in (_META_TEXT, _META_LYRICS):
    out.meta_ticks.append(tick)
  if track != 0:
    return
  if kind == _META_TEMPO:
    if len(body) != 3:
      raise MidiError("set_tempo needs 3 bytes")
    tempo = (body[0] << 16) | (body[1] << 8) | body[2]
    if tempo == 0:
      raise MidiError("set_tempo of 0 microseconds per quarter")
    scale = 60.0 / ((6e7 / tempo) * out.resolution)
    if tick == 0:
      out.tick_scales[:] = [(0, scale)]
    elif scale != out.tick_scales[-1][1]:
      out.tick_scales.append((tick, scale))
  elif kind == _META_TIME_SIGNATURE:
    if len(body) < 2:
      raise MidiError("time_signature needs 4 bytes")
    out.time_signatures.append((body[0], 2 ** body[1], tick))
    out.meta_ticks.append(tick)
  elif kind == _META_KEY_SIGNATURE:
    if len(body) < 2 or not -7 <= struct.unpack("b", body[:1])[0] <= 7 or body[1] > 1:
      raise MidiError("invalid key_signature")
    out.meta_ticks.append(tick)


def _status_tables() -> tuple[np.ndarray, np.ndarray]:
  """Per status byte: a code for the event-chain walk and the data length.

  Codes: -1 running status (a data byte), 3 meta event, otherwise the data length
  later running-status events get (0: none allowed after sysex/system messages).
  Undefined status bytes get a hugely negative length, which breaks the chain.
  """
  code = np.full(256, -1, np.int64)
  length = np.full(256, -(1 << 40), np.int64)
  for status in range(0x80, 0xF0):
    code[status] = length[status] = _CHANNEL_DATA_LENGTH[status & 0xF0]
  for status, n in _SYSTEM_DATA_LENGTH.items():
    code[status], length[status] = 0, n
  code[[0xF0, 0xF7, 0xF4, 0xF5, 0xF9, 0xFD]] = 0
  code[0xFF] = 3
  return code, length


_STATUS_CODE, _STATUS_LENGTH = _status_tables()


class _Unsupported(Exception):
  """The vectorised decoder does not handle this track; use the event loop."""


def _varints(pad: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
  """Length (bytes) and value (first 4 bytes) of a varint starting at each position."""
  positions = np.arange(n)
  terminators = np.flatnonzero(pad < 0x80)
  length = terminators[np.searchsorted(terminators, positions)] - positions + 1
  value = np.zeros(n, np.int64)
  for k in range(4):
    value = np.where(k < length, (value << 7) | (pad[positions + k] & 0x7F), value)
  return length, value


def _event_starts(data: bytes, pos: int, end: int):
  """Offsets of the events of a track chunk (relative to ``pos``) and byte arrays."""
  n = end - pos
  pad = np.zeros(n + 16, np.int64)
  pad[:n] = np.frombuffer(data, np.uint8, count=n, offset=pos)
  vlen, vval = _varints(pad, n + 8)
  p = np.arange(n)
  q = np.minimum(p + vlen[:n], n + 4)
  status = pad[q]
  meta_len = q + 2 + vlen[np.minimum(q + 2, n + 7)] + vval[np.minimum(q + 2, n + 7)]
  sysex_len = q + 1 + vlen[q + 1] + vval[q + 1]
  code = _STATUS_CODE[status]
  nxt = q + 1 + _STATUS_LENGTH[status]
  nxt = np.where((status == 0xF0) | (status == 0xF7), sysex_len, nxt)
  nxt = np.where(status == 0xFF, meta_len, nxt)
  codes, chain, qs = code.tolist(), nxt.tolist(), q.tolist()
  starts, at, running_length = [], 0, None
  while 0 <= at < n:
    starts.append(at)
    c = codes[at]
    if c < 0:
      if not running_length:
        raise _Unsupported
      at = qs[at] + running_length
    else:
      if c != 3:
        running_length = c
      at = chain[at]
  if at != n:
    raise _Unsupported
  return np.array(starts, np.int64), pad, vlen, vval


def _decode_track_vectorised(data: bytes, pos: int, end: int, index: int,
                             loader: _Loader, out: MidiData) -> int:
  """``_read_track`` for the common case, with numpy instead of a per-event loop.

  Raises:
    _Unsupported: running status on 1-data-byte messages, varints over 4 bytes,
      bad bytes, program changes between a channel's events, or note on/off
      sequences other than strictly alternating on/off pairs.
  """
  if end == pos:
    return 0
  starts, pad, vlen, vval = _event_starts(data, pos, end)
  if np.any(vlen[starts] > 4):
    raise _Unsupported
  ticks = np.cumsum(vval[starts])
  q = starts + vlen[starts]
  raw = pad[q]
  sets_status = (raw >= 0x80) & (raw != 0xFF)
  last = np.maximum.accumulate(np.where(sets_status, np.arange(len(raw)), -1))
  running = raw < 0x80
  if np.any(running & (last < 0)):
    raise _Unsupported
  status = np.where(running, raw[np.maximum(last, 0)], raw)
  kind = np.where(status < 0xF0, status & 0xF0, status)
  d1 = np.where(running, pad[q], pad[q + 1])
  d2 = np.where(running, pad[q + 1], pad[q + 2])
  voice = kind < 0xF0
  two_bytes = voice & (kind != 0xC0) & (kind != 0xD0)
  if np.any(voice & (d1 > 127)) or np.any(two_bytes & (d2 > 127)):
    raise _Unsupported
  for i in np.flatnonzero(raw == 0xFF):
    body = q[i] + 2 + vlen[q[i] + 2]
    _meta_event(int(pad[q[i] + 1]), data[pos + body:pos + body + vval[q[i] + 2]],
                int(ticks[i]), index, out)
  _voice_events(ticks, kind, status & 0x0F, d1, d2, index, loader)
  return int(ticks[-1])


def _voice_events(ticks, kind, channel, d1, d2, index, loader: _Loader) -> None:
  """Note pairing and event attachment for one track (vectorised common case)."""
  is_on = (kind == 0x90) & (d2 > 0)
  is_note = is_on | (kind == 0x80) | (kind == 0x90)
  is_event = (kind == 0xB0) | (kind == 0xE0)
  program = np.zeros(len(ticks), np.int64)
  for c in np.unique(channel[kind < 0xF0]):
    changes = np.flatnonzero((kind == 0xC0) & (channel == c))
    used = np.flatnonzero((is_note | is_event) & (channel == c))
    if len(changes):
      before = np.searchsorted(changes, used) - 1
      values = np.where(before >= 0, d1[changes[np.maximum(before, 0)]], 0)
      if len(np.unique(values)) > 1:
        raise _Unsupported
      program[used] = values
  note_events = np.flatnonzero(is_note)
  key = channel[note_events] * 128 + d1[note_events]
  order = note_events[np.lexsort((note_events, key))]
  key = channel[order] * 128 + d1[order]
  group_start = np.r_[True, key[1:] != key[:-1]]
  group = np.cumsum(group_start) - 1
  rank = np.arange(len(order)) - np.flatnonzero(group_start)[group]
  # A key is simple when its events alternate on/off with distinct ticks.
  bad = (is_on[order] != (rank % 2 == 0))
  bad[1:] |= (rank[1:] % 2 == 1) & (ticks[order[1:]] == ticks[order[:-1]])
  bad_group = np.zeros(group[-1] + 1 if len(group) else 0, bool)
  bad_group[group[bad]] = True
  simple = ~bad_group[group]
  closes = np.flatnonzero(simple & (rank % 2 == 1))
  on, off = order[closes - 1], order[closes]
  within = np.zeros(len(off), np.int64)
  extra = [_pair_notes(order[~simple & (group == g)], ticks, is_on)
           for g in np.flatnonzero(bad_group)]
  if extra:
    on = np.concatenate([on] + [e[0] for e in extra])
    off = np.concatenate([off] + [e[1] for e in extra])
    within = np.concatenate([within] + [e[2] for e in extra])
  by_close = np.lexsort((within, off))
  on, off = on[by_close], off[by_close]
  for c in channel[off][np.sort(np.unique(channel[off], return_index=True)[1])]:
    mine = channel[off] == c
    inst = loader.get(int(program[off[mine][0]]), int(c), index, True)
    inst.starts += ticks[on[mine]].tolist()
    inst.ends += ticks[off[mine]].tolist()
    inst.pitches += d1[on[mine]].tolist()
    inst.velocities += d2[on[mine]].tolist()
    inst.event_ticks += ticks[is_event & (channel == c)].tolist()


def _pair_notes(events: np.ndarray, ticks: np.ndarray, is_on: np.ndarray):
  """pretty_midi's pairing for the events of one (channel, pitch), in file order.

  Returns (note-on event, closing event, rank among notes that event closes).
  """
  on, off, within, open_notes = [], [], [], []
  for e, tick, note_on in zip(events.tolist(), ticks[events].tolist(),
                              is_on[events].tolist()):
    if note_on:
      open_notes.append((e, tick))
      continue
    closing = [o for o, t in open_notes if t != tick]
    on += closing
    off += [e] * len(closing)
    within += range(len(closing))
    open_notes = [(o, t) for o, t in open_notes if t == tick] if closing else []
  return (np.array(on, np.int64), np.array(off, np.int64), np.array(within, np.int64))


def read_midi(data: bytes) -> MidiData:
  """Decodes a Standard MIDI File into what pretty_midi would load.

  Raises:
    MidiError: truncated or malformed data, SMPTE time division, or a largest
      tick that pretty_midi rejects as corrupt.
  """
  if len(data) < 14 or data[:4] != b"MThd":
    raise MidiError("MThd not found: not a MIDI file")
  size = struct.unpack(">L", data[4:8])[0]
  if size < 6 or len(data) < 8 + size:
    raise MidiError("truncated MIDI header")
  _, num_tracks, division = struct.unpack(">hhh", data[8:14])
  if division <= 0:
    raise MidiError("SMPTE time division is not supported")
  out = MidiData(division, [(0, 60.0 / (120.0 * division))], 0, [], [], [])
  loader = _Loader()
  pos, max_tick = 8 + size, 0
  for index in range(num_tracks):
    if pos + 8 > len(data):
      raise MidiError(f"track {index} is missing (file truncated)")
    name, length = struct.unpack(">4sL", data[pos:pos + 8])
    if name != b"MTrk":
      raise MidiError(f"no MTrk header at the start of track {index}")
    if pos + 8 + length > len(data):
      raise MidiError(f"track {index} is truncated")
    max_tick = max(max_tick, _read_track_either(data, pos + 8, pos + 8 + length,
                                                index, loader, out))
    pos += 8 + length
  out.max_tick = max_tick + 1
  if out.max_tick > MAX_TICK:
    raise MidiError(f"largest tick {out.max_tick} is implausibly large")
  out.instruments = [inst.freeze() for inst in loader.instruments.values()]
  return out


def _read_track_either(data, pos, end, index, loader, out) -> int:
  """The vectorised decoder, or the event loop where it does not apply."""
  snapshot = (dict(loader.instruments), dict(loader.stragglers), list(out.tick_scales),
              list(out.time_signatures), list(out.meta_ticks))
  try:
    return _decode_track_vectorised(data, pos, end, index, loader, out)
  except _Unsupported:
    loader.instruments, loader.stragglers = snapshot[0], snapshot[1]
    out.tick_scales[:], out.time_signatures[:], out.meta_ticks[:] = snapshot[2:]
    return _read_track(data, pos, end, index, loader, out)
