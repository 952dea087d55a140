"""The metadata JSON that lets a runtime (``lite_runner``) turn exported outputs into MIDI.

``tracks`` describe slices of the ``outputs`` tensor: ``melody`` (one-hot classes:
0 no event, 1 note-off, 2.. pitches from ``min_pitch``), ``drums`` (one-hot over bit
masks of drum classes, or a roll) and ``groove`` (hits | velocities | offsets per class);
drum classes play the first pitch of their class, as the converters' ``from_tensors``.
"""

from __future__ import annotations

import json
import os
from typing import Any

import jax
import ml_collections

from flax_musicvae import config_lib
from flax_musicvae.data import drums as drums_lib
from flax_musicvae.data import melody as melody_lib
from flax_musicvae.export import signatures
from flax_musicvae.models.vae import MusicVAE

FORMAT_VERSION = 1
QPM = 120.0
BASS_PROGRAM = 33


def _melody_track(start: int, conv, program: int, channel: int) -> dict[str, Any]:
  return {"type": "melody", "start": start, "depth": conv.output_depth,
          "min_pitch": conv.min_pitch, "program": program, "channel": channel,
          "velocity": melody_lib.OUTPUT_VELOCITY}


def _drums_track(start: int, conv) -> dict[str, Any]:
  return {"type": "drums", "start": start, "depth": conv.output_depth,
          "pitches": [c[0] for c in conv.pitch_classes],
          "pitch_classes": [list(c) for c in conv.pitch_classes], "roll": conv.roll_output,
          "channel": drums_lib.DRUM_INSTRUMENT, "velocity": drums_lib.OUTPUT_VELOCITY}


def tracks(data_cfg: ml_collections.ConfigDict) -> list[dict[str, Any]]:
  """Output-slice descriptions for the config's representation."""
  conv = config_lib.make_converter(data_cfg)
  if conv.end_token is not None:
    raise NotImplementedError("representations with an end token are not exported")
  kind = data_cfg.converter
  if kind == "melody":
    return [_melody_track(0, conv, 0, 0)]
  if kind == "drums":
    return [_drums_track(0, conv)]
  if kind == "trio":
    mel, bass, _ = conv.split_depths
    return [_melody_track(0, conv.melody_converter, 0, 0),
            _melody_track(mel, conv.melody_converter, BASS_PROGRAM, 1),
            _drums_track(mel + bass, conv.drums_converter)]
  if kind == "groove":
    return [{"type": "groove", "start": 0, "depth": conv.output_depth,
             "pitches": [c[0] for c in conv.inference_pitch_classes],
             "pitch_classes": [list(c) for c in conv.inference_pitch_classes],
             "channel": drums_lib.DRUM_INSTRUMENT}]
  raise NotImplementedError(f"no MIDI description for converter {kind!r}")


def _shapes(fn, params, specs) -> dict[str, list[int]]:
  args = [jax.ShapeDtypeStruct(s.shape, s.dtype) for s in specs]
  out = jax.eval_shape(fn, params, *args)
  return {k: {"shape": list(v.shape), "dtype": str(v.dtype)} for k, v in out.items()}


def build(config: ml_collections.ConfigDict, model: MusicVAE, params, batch_size: int,
          files: dict[str, Any]) -> dict[str, Any]:
  """The metadata dictionary of one export (``files``: name -> size etc.)."""
  sp = model.spec
  specs = signatures.input_specs(sp, batch_size)
  fns = signatures.functions(model)
  sigs = {name: {"inputs": {s.name: {"shape": list(s.shape), "dtype": s.dtype}
                            for s in specs[name]},
                 "outputs": _shapes(fns[name], params, specs[name])}
          for name in signatures.SIGNATURES}
  conv = config_lib.make_converter(config.data)
  return {
      "format_version": FORMAT_VERSION,
      "config_name": config.name,
      "converter": config.data.converter,
      "converter_kwargs": json.loads(config.data.converter_kwargs.to_json_best_effort()),
      "batch_size": batch_size,
      "steps": sp.max_seq_len,
      "steps_per_quarter": conv.steps_per_quarter,
      "qpm": QPM,
      "z_size": sp.z_size,
      "decoder": sp.decoder,
      "head": sp.head.kind,
      "output_depths": list(sp.head.parts),
      "noise": {"kind": signatures.noise_kind(sp), "depth": signatures.noise_depth(sp)},
      "tracks": tracks(config.data),
      "signatures": sigs,
      "files": files,
  }


def write(meta: dict[str, Any], path: str | os.PathLike) -> None:
  with open(path, "w") as f:
    json.dump(meta, f, indent=2)
    f.write("\n")


def read(path: str | os.PathLike) -> dict[str, Any]:
  with open(path) as f:
    meta = json.load(f)
  if meta.get("format_version") != FORMAT_VERSION:
    raise ValueError(f"{path}: metadata format {meta.get('format_version')} is not "
                     f"{FORMAT_VERSION}")
  return meta
