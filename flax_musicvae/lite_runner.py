"""On-device sampling: an exported ``.tflite`` + its ``metadata.json`` -> MIDI files.

Needs only numpy and ``ai_edge_litert`` (no JAX, TensorFlow or note_seq), so it runs
as a single file on a device:

  python lite_runner.py --model=b1/model_int8.tflite --output=groove.mid --temperature=1.0

The sampling noise the exported graph takes as input is drawn here with numpy:
``z ~ N(0, 1)``, Gumbel noise for categorical heads, U(0, 1) noise for groove hits.
Outputs become notes as the converters' ``from_tensors`` do (see the metadata's
``tracks``) and are written as a Standard MIDI File (format 1).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pathlib
import struct
import sys
from typing import Any, Sequence

import numpy as np

TICKS_PER_QUARTER = 480
DRUM_CHANNEL = 9


@dataclasses.dataclass(frozen=True)
class Note:
  pitch: int
  velocity: int
  start: float    # seconds
  end: float
  channel: int
  program: int = 0


# ----------------------------------------------------------------------------- model


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
  with open(path) as f:
    return json.load(f)


def make_inputs(meta: dict[str, Any], rng: np.random.Generator, temperature: float,
                controls: np.ndarray | None = None) -> dict[str, np.ndarray]:
  """Inputs of the ``sample`` signature with freshly drawn noise."""
  if temperature <= 0:
    raise ValueError(f"temperature must be > 0, got {temperature}")
  specs = meta["signatures"]["sample"]["inputs"]
  noise_shape = specs["noise"]["shape"]
  if meta["noise"]["kind"] == "gumbel":
    noise = rng.gumbel(size=noise_shape)
  else:
    noise = rng.random(noise_shape)
  inputs = {"z_noise": rng.standard_normal(specs["z_noise"]["shape"]).astype(np.float32),
            "noise": noise.astype(np.float32),
            "temperature": np.asarray(temperature, np.float32)}
  if "controls" in specs:
    if controls is None:
      raise ValueError(f"model {meta['config_name']} needs controls of shape "
                       f"{specs['controls']['shape']} (pass --controls=file.npy)")
    inputs["controls"] = np.broadcast_to(controls, specs["controls"]["shape"]).astype(
        np.float32)
  return inputs


class LiteSampler:
  """The ``sample`` signature of a ``.tflite`` file."""

  def __init__(self, model_path: str | os.PathLike, meta: dict[str, Any],
               num_threads: int | None = None):
    from ai_edge_litert.interpreter import Interpreter  # pylint: disable=g-import-not-at-top
    self.meta = meta
    self.interpreter = Interpreter(model_path=os.fspath(model_path), num_threads=num_threads)
    self.runner = self.interpreter.get_signature_runner("sample")

  def __call__(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return self.runner(**inputs)


# ----------------------------------------------------------------------------- notes


def _melody_notes(classes: np.ndarray, track: dict[str, Any], step: float) -> list[Note]:
  """Classes 0 no event, 1 note-off, 2.. pitches; a note lasts until the next event."""
  notes, current = [], None
  for i, c in enumerate(classes.tolist()):
    if c >= 1 and current is not None:
      notes.append(dataclasses.replace(current, end=i * step))
      current = None
    if c >= 2:
      current = Note(c - 2 + track["min_pitch"], track["velocity"], i * step, 0.0,
                     track["channel"], track["program"])
  if current is not None:
    notes.append(dataclasses.replace(current, end=len(classes) * step))
  return notes


def _drum_notes(part: np.ndarray, track: dict[str, Any], step: float) -> list[Note]:
  pitches = track["pitches"]
  if track["roll"]:
    hits = part[:, :len(pitches)] != 0
  else:
    labels = np.argmax(part, -1)
    hits = (labels[:, None] >> np.arange(len(pitches))) & 1 == 1
  return [Note(pitches[j], track["velocity"], i * step, (i + 1) * step, track["channel"])
          for i, j in zip(*np.nonzero(hits))]


def _groove_notes(part: np.ndarray, track: dict[str, Any], step: float) -> list[Note]:
  """Hit > 0.5; velocity round(v * 127); onset (i - offset / 2) * step (clipped at 0)."""
  hits, vels, offsets = np.split(part, 3, axis=-1)
  notes = []
  for i, j in zip(*np.nonzero(hits > 0.5)):
    start = (i - float(np.clip(offsets[i, j] / 2, -0.5, 0.5))) * step
    velocity = int(np.clip(np.round(vels[i, j] * 127), 0, 127))
    notes.append(Note(track["pitches"][j], velocity, max(start, 0.0), start + step,
                      track["channel"]))
  return notes


_TRACK_DECODERS = {
    "melody": lambda part, t, s: _melody_notes(np.argmax(part, -1), t, s),
    "drums": _drum_notes,
    "groove": _groove_notes,
}


def to_notes(output: np.ndarray, meta: dict[str, Any]) -> list[Note]:
  """One example's ``outputs [steps, depth]`` -> notes of every track."""
  step = 60.0 / meta["qpm"] / meta["steps_per_quarter"]
  notes = []
  for track in meta["tracks"]:
    part = output[:, track["start"]:track["start"] + track["depth"]]
    notes += _TRACK_DECODERS[track["type"]](part, track, step)
  return sorted(notes, key=lambda n: (n.start, n.channel, n.pitch))


# ----------------------------------------------------------------------------- MIDI


def _varlen(value: int) -> bytes:
  out = [value & 0x7F]
  value >>= 7
  while value:
    out.append(0x80 | (value & 0x7F))
    value >>= 7
  return bytes(reversed(out))


def _chunk(kind: bytes, data: bytes) -> bytes:
  return kind + struct.pack(">I", len(data)) + data


def _track(events: list[tuple[int, int, bytes]]) -> bytes:
  """``(tick, order, message)`` events -> an MTrk chunk with end-of-track."""
  data, last = bytearray(), 0
  for tick, _, message in sorted(events):
    data += _varlen(tick - last) + message
    last = tick
  data += b"\x00\xff\x2f\x00"
  return _chunk(b"MTrk", bytes(data))


def midi_bytes(notes: Sequence[Note], qpm: float) -> bytes:
  """Standard MIDI File (format 1): a tempo track plus one track per channel."""
  ticks = lambda t: int(round(t * qpm / 60.0 * TICKS_PER_QUARTER))
  tempo = int(round(60_000_000 / qpm))
  tracks = [_track([(0, 0, b"\xff\x51\x03" + tempo.to_bytes(3, "big"))])]
  for channel in sorted({n.channel for n in notes}):
    mine = [n for n in notes if n.channel == channel]
    events = []
    if channel != DRUM_CHANNEL:
      events.append((0, 0, bytes([0xC0 | channel, mine[0].program])))
    for n in mine:
      start, end = ticks(n.start), max(ticks(n.end), ticks(n.start) + 1)
      events.append((start, 2, bytes([0x90 | channel, n.pitch, max(n.velocity, 1)])))
      events.append((end, 1, bytes([0x80 | channel, n.pitch, 0])))
    tracks.append(_track(events))
  header = _chunk(b"MThd", struct.pack(">HHH", 1, len(tracks), TICKS_PER_QUARTER))
  return header + b"".join(tracks)


# ----------------------------------------------------------------------------- CLI


def output_paths(output: pathlib.Path, count: int) -> list[pathlib.Path]:
  if count == 1:
    return [output]
  return [output.with_name(f"{output.stem}_{i}{output.suffix}") for i in range(count)]


def run(model: str | os.PathLike, meta: dict[str, Any], output: pathlib.Path, *,
        seed: int = 0, temperature: float = 1.0, controls: np.ndarray | None = None,
        num_threads: int | None = None) -> list[pathlib.Path]:
  """Samples one batch and writes one MIDI file per example; returns the paths."""
  sampler = LiteSampler(model, meta, num_threads)
  inputs = make_inputs(meta, np.random.default_rng(seed), temperature, controls)
  outputs = sampler(inputs)["outputs"]
  paths = output_paths(output, len(outputs))
  for path, out in zip(paths, outputs):
    path.write_bytes(midi_bytes(to_notes(out, meta), meta["qpm"]))
  return paths


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(
      description="Sample MIDI from an exported MusicVAE/GrooVAE .tflite model "
                  "(numpy + ai_edge_litert only).")
  parser.add_argument("--model", required=True, help="the .tflite file")
  parser.add_argument("--metadata", default=None,
                      help="its metadata.json (default: metadata.json next to --model)")
  parser.add_argument("--output", required=True, type=pathlib.Path,
                      help="MIDI file to write; with batch size N > 1, <stem>_<i>.mid")
  parser.add_argument("--seed", type=int, default=0, help="numpy seed for all noise")
  parser.add_argument("--temperature", type=float, default=1.0,
                      help="sampling temperature (> 0)")
  parser.add_argument("--controls", default=None,
                      help=".npy control sequence [steps, control_depth] (models with "
                           "controls only)")
  parser.add_argument("--num_threads", type=int, default=None, help="LiteRT CPU threads")
  return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
  args = parse_args(argv)
  meta_path = args.metadata or pathlib.Path(args.model).with_name("metadata.json")
  meta = read_metadata(meta_path)
  controls = None if args.controls is None else np.load(args.controls)
  paths = run(args.model, meta, args.output, seed=args.seed, temperature=args.temperature,
              controls=controls, num_threads=args.num_threads)
  for path in paths:
    print(path)
  return 0


if __name__ == "__main__":
  sys.exit(main())
