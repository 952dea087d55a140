"""magenta.js (@magenta/music) MusicVAE checkpoint folders.

A folder holds ``config.json`` (the ``MusicVAESpec``: ``{"type": "MusicVAE",
"dataConverter": {"type": ..., "args": {...}}, ...}``), ``weights_manifest.json``
in the TensorFlow.js format (``[{"paths": [...], "weights": [{"name", "shape",
"dtype"}]}]``) and the binary shards: every weight's little-endian float32 bytes
concatenated in manifest order and cut into pieces of at most 4 MiB, as Magenta's
``checkpoint_converter.py`` (tensorflowjs ``write_weights``) produces. Weight names
are Magenta's TF variable names, which @magenta/music looks up directly.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any, Mapping, Sequence

import numpy as np

SHARD_BYTES = 4 * 1024 * 1024
MANIFEST = "weights_manifest.json"
CONFIG = "config.json"

# tfjs manifest dtypes, and the affine/half "quantization" of hosted *_q1/_q2 checkpoints.
_DTYPES = {"float32": np.dtype("<f4"), "int32": np.dtype("<i4"), "bool": np.dtype("?")}
_QUANTIZED = {"uint8": np.dtype("u1"), "uint16": np.dtype("<u2"), "float16": np.dtype("<f2")}


def write_weights(folder: str | os.PathLike, weights: Mapping[str, np.ndarray],
                  shard_bytes: int = SHARD_BYTES) -> list[dict[str, Any]]:
  """Writes float32 shards and ``weights_manifest.json``; returns the manifest.

  Scalars are left out, as Magenta's converter does (``global_step``).
  """
  names = sorted(n for n, w in weights.items() if np.ndim(w) > 0)
  if not names:
    raise ValueError("no non-scalar weights to export")
  entries, chunks = [], []
  for name in names:
    array = np.asarray(weights[name], dtype=np.float32)
    entries.append({"name": name, "shape": list(array.shape), "dtype": "float32"})
    chunks.append(np.ascontiguousarray(array, dtype="<f4").tobytes())
  data = memoryview(b"".join(chunks))
  num_shards = max(1, -(-len(data) // shard_bytes))
  paths = [f"group1-shard{i + 1}of{num_shards}.bin" for i in range(num_shards)]
  os.makedirs(folder, exist_ok=True)
  for i, path in enumerate(paths):
    with open(os.path.join(folder, path), "wb") as f:
      f.write(data[i * shard_bytes:(i + 1) * shard_bytes])
  manifest = [{"paths": paths, "weights": entries}]
  with open(os.path.join(folder, MANIFEST), "w", encoding="utf-8") as f:
    json.dump(manifest, f, indent=1)
  return manifest


def _decode(entry: Mapping[str, Any], data: memoryview, pos: int) -> tuple[np.ndarray, int]:
  shape = tuple(entry["shape"])
  count = int(np.prod(shape, dtype=np.int64))
  quant = entry.get("quantization")
  if quant:
    if quant["dtype"] not in _QUANTIZED:
      raise ValueError(f"{entry['name']}: unsupported quantization {quant['dtype']!r}")
    dtype = _QUANTIZED[quant["dtype"]]
  elif entry["dtype"] in _DTYPES:
    dtype = _DTYPES[entry["dtype"]]
  else:
    raise ValueError(f"{entry['name']}: unsupported dtype {entry['dtype']!r}")
  end = pos + count * dtype.itemsize
  if end > len(data):
    raise ValueError(f"{entry['name']}: weight shards end before this weight does")
  array = np.frombuffer(data[pos:end], dtype=dtype).reshape(shape)
  if quant and quant["dtype"] != "float16":
    array = array * np.float32(quant["scale"]) + np.float32(quant["min"])
  return array.astype(_DTYPES.get(entry["dtype"], np.float32)), end


def read_weights(folder: str | os.PathLike) -> dict[str, np.ndarray]:
  """Reads a tfjs weights manifest and its shards (also 1/2-byte quantized ones)."""
  with open(os.path.join(folder, MANIFEST), encoding="utf-8") as f:
    manifest = json.load(f)
  weights = {}
  for group in manifest:
    shards = []
    for path in group["paths"]:
      with open(os.path.join(folder, path), "rb") as f:
        shards.append(f.read())
    data, pos = memoryview(b"".join(shards)), 0
    for entry in group["weights"]:
      weights[entry["name"]], pos = _decode(entry, data, pos)
    if pos != len(data):
      raise ValueError(f"{folder}: {len(data) - pos} bytes of shards are not described by "
                       "the manifest")
  return weights


def write_folder(folder: str | os.PathLike, weights: Mapping[str, np.ndarray],
                 spec: Mapping[str, Any], shard_bytes: int = SHARD_BYTES) -> None:
  """A complete magenta.js checkpoint folder: ``config.json`` + manifest + shards."""
  if spec.get("type") != "MusicVAE" or "dataConverter" not in spec:
    raise ValueError("spec must be a MusicVAESpec: {'type': 'MusicVAE', 'dataConverter': ...}")
  check_supported(weights)
  write_weights(folder, weights, shard_bytes)
  with open(os.path.join(folder, CONFIG), "w", encoding="utf-8") as f:
    json.dump(spec, f, indent=1)


def read_folder(folder: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
  """(weights by TF name, MusicVAESpec) of a magenta.js checkpoint folder."""
  with open(os.path.join(folder, CONFIG), encoding="utf-8") as f:
    spec = json.load(f)
  return read_weights(folder), spec


# --------------------------------------------------------------------------------------
# MusicVAESpec (config.json) for our converters.

_CHORD_ENCODERS = {"triad": "TriadChordEncoder"}  # Magenta's TriadChordOneHotEncoding


def _melody_args(converter: Any) -> dict[str, Any]:
  return {"minPitch": int(converter.min_pitch), "maxPitch": int(converter.max_pitch)}


def _pitch_classes(classes: Sequence[Sequence[int]]) -> dict[str, Any]:
  # Always explicit: magenta.js's default 9 classes differ from note_seq's (22, 26, 43).
  return {"pitchClasses": [[int(p) for p in c] for c in classes]}


def _groove_args(converter: Any) -> dict[str, Any]:
  if converter.hits_as_controls or converter.add_instruments:
    raise ValueError("magenta.js GrooveConverter has no hits-as-controls or infilling inputs")
  if converter.tapify != converter.fixed_velocities and not converter.humanize:
    raise ValueError("magenta.js 'tapify' also zeroes input velocities: export needs "
                     "tapify and fixed_velocities both set or both unset")
  return {"stepsPerQuarter": int(converter.steps_per_quarter),
          "humanize": bool(converter.humanize), "tapify": bool(converter.tapify),
          **_pitch_classes(converter.inference_pitch_classes)}


def spec_for(converter: Any, model_config: Any) -> dict[str, Any]:
  """The ``MusicVAESpec`` @magenta/music needs for ``converter`` and ``config.model``."""
  kind = type(converter).__name__
  if model_config.decoder == "multi_out":
    raise ValueError("magenta.js has no single-LSTM multi-output decoder (flat-trio); its "
                     "TrioConverter expects one decoder per instrument")
  args: dict[str, Any] = {"numSteps": int(model_config.max_seq_len)}
  if model_config.decoder == "hierarchical":
    args["numSegments"] = int(model_config.level_lengths[0])
  spec: dict[str, Any] = {"type": "MusicVAE", "useBooleanDecoder": False,
                          "conditionOnKey": False}
  if getattr(converter, "chord_encoding", None):
    spec["chordEncoder"] = _CHORD_ENCODERS[converter.chord_encoding]
  if kind == "OneHotMelodyConverter":
    js_type = "MelodyConverter"
    args.update(_melody_args(converter))
  elif kind == "DrumsConverter":
    js_type = "DrumRollConverter" if converter.roll_output else "DrumsConverter"
    args.update(_pitch_classes(converter.pitch_classes))
  elif kind == "TrioConverter":
    js_type = "TrioConverter"
    mel = _melody_args(converter.melody_converter)
    args.update(melArgs=mel, bassArgs=dict(mel),
                drumsArgs=_pitch_classes(converter.drums_converter.pitch_classes))
  elif kind == "GrooveConverter":
    js_type = "GrooveConverter"
    args.update(_groove_args(converter))
  else:
    raise ValueError(f"no magenta.js data converter is known for {kind}")
  spec["dataConverter"] = {"type": js_type, "args": args}
  return spec


def check_supported(weights: Mapping[str, np.ndarray]) -> None:
  """Raises if @magenta/music cannot build the architecture these weights describe."""
  fw = "bidirectional_rnn/fw/multi_rnn_cell/cell_0/lstm_cell/kernel"
  flat = [n for n in weights if re.fullmatch(rf"encoder/cell_\d+/{fw}", n)]
  hier = [n for n in weights if re.fullmatch(rf"encoder/hierarchical_level_\d+/cell_0/{fw}", n)]
  if flat and len(flat) != 1:
    raise ValueError(f"magenta.js supports single-layer bidirectional encoders only; this "
                     f"model has {len(flat)} encoder layers")
  if hier and len(hier) != 2:
    raise ValueError(f"magenta.js supports 2-level hierarchical encoders only; this model "
                     f"has {len(hier)} levels")
