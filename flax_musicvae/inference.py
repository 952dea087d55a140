"""Inference API for trained MusicVAE / GrooVAE models (Magenta's ``TrainedModel``).

``MusicVAEModel.from_workdir(workdir)`` loads the config and latest parameters of a
training run; ``from_pretrained(name)`` a shipped model (:mod:`flax_musicvae.pretrained`);
``from_checkpoint(config, params)`` wraps parameters from anywhere (e.g.
an imported Magenta checkpoint). Every method is jitted and deterministic: the same
``seed`` gives the same output bit for bit. Batches are padded to a power of two (at
most ``max_batch_size``) so a handful of shapes is ever compiled.

Interpolation follows Magenta (``slerp`` between posterior means) and magenta.js
(``lerp``, and a bilinear grid between four corners); ``similar`` is magenta.js's
``z' = s z + (1 - s) eps``.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
import pathlib
from typing import Any, Sequence, Union

import jax
import ml_collections
import numpy as np

from flax_musicvae import config_lib
from flax_musicvae import models
from flax_musicvae import pretrained
from flax_musicvae import workdir as workdir_lib

CACHE_DIR = pathlib.Path(os.environ.get("FLAX_MUSICVAE_CACHE",
                                        "~/.cache/flax_musicvae")).expanduser()
PathLike = Union[str, os.PathLike]


def enable_compilation_cache(cache_dir: PathLike | None = None) -> None:
  """Persists compiled XLA programs across processes (the CLI's warm start)."""
  jax.config.update("jax_compilation_cache_dir", str(cache_dir or CACHE_DIR / "jax"))
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)


class InputError(ValueError):
  """A user input the model cannot use; the message says what to do."""


class NoExtractedExamplesError(InputError):
  """An input yields no example of the model's representation."""


class MultipleExtractedExamplesError(InputError):
  """An input yields several examples (windows) where exactly one is needed.

  ``candidates`` holds the extracted examples (``ConverterTensors``).
  """

  def __init__(self, message: str, candidates=None):
    super().__init__(message)
    self.candidates = candidates


# ----------------------------------------------------------------------------- loading


load_config = workdir_lib.load_config


def load_workdir_params(workdir: PathLike, config) -> Any:
  """Newest usable parameters of ``workdir``, cached as .npz for fast reloads."""
  return workdir_lib.load_params(workdir, workdir_lib.abstract_params(config),
                                 CACHE_DIR / "params")[0]


def save_workdir(config, params, workdir: PathLike, step: int = 0) -> pathlib.Path:
  """Writes ``config.json`` and an orbax checkpoint (params only) in the training layout."""
  workdir = pathlib.Path(workdir).absolute()
  workdir_lib.save(workdir, config, workdir_lib.Checkpoint(step, params))
  return workdir


# ----------------------------------------------------------------------------- inputs


def read_midi(path: PathLike):
  """A NoteSequence from a MIDI file, with a clear error for anything else."""
  import note_seq  # pylint: disable=g-import-not-at-top
  path = pathlib.Path(path)
  if not path.is_file():
    raise InputError(f"{path}: no such file")
  data = path.read_bytes()
  if not data:
    raise InputError(f"{path}: the file is empty; pass a Standard MIDI file (.mid)")
  if not data.startswith(b"MThd"):
    raise InputError(f"{path}: not a MIDI file (no 'MThd' header); pass a Standard MIDI "
                     "file (.mid), e.g. exported from your DAW")
  try:
    ns = note_seq.midi_to_note_sequence(data)
  except Exception as e:  # pylint: disable=broad-except
    raise InputError(f"{path}: cannot parse the MIDI file ({e})") from e
  ns.filename = str(path)
  return ns


def as_note_sequence(item):
  return read_midi(item) if isinstance(item, (str, os.PathLike)) else item


def _name(ns) -> str:
  return ns.filename or "the input sequence"


def check_input(ns, converter) -> None:
  """Raises ``InputError`` for inputs no example can come from, saying why."""
  if not ns.notes:
    raise NoExtractedExamplesError(f"{_name(ns)} has no notes")
  for ts in ns.time_signatures:
    if (ts.numerator, ts.denominator) != (4, 4):
      raise NoExtractedExamplesError(
          f"{_name(ns)} is in {ts.numerator}/{ts.denominator} time at {ts.time:.2f}s; "
          "MusicVAE models only handle 4/4: re-export the clip in 4/4")
  drums_only = type(converter).__name__ in ("GrooveConverter", "DrumsConverter")
  if drums_only and not any(n.is_drum for n in ns.notes):
    raise NoExtractedExamplesError(
        f"{_name(ns)} has no drum notes (MIDI channel 10) but this is a drum model: pass a "
        "drum track, or use drumify for a non-drum rhythm")
  if not drums_only and all(n.is_drum for n in ns.notes):
    raise NoExtractedExamplesError(
        f"{_name(ns)} only has drum notes but this model needs pitched instruments")


def _window_summary(tensors, steps_per_bar: int, shown: int = 8) -> str:
  """One line per candidate example (the first ``shown``): its bars and active steps."""
  lines = []
  for i, out in enumerate(tensors.outputs[:shown]):
    active = int(np.count_nonzero(np.any(out > 0, axis=1)))
    lines.append(f"  [{i}] {len(out) // steps_per_bar} bars, {active}/{len(out)} steps "
                 "with notes")
  if len(tensors) > shown:
    lines.append(f"  ... and {len(tensors) - shown} more")
  return "\n".join(lines)


def _infer_tensors(ns, converter, no_example: str):
  """Infer-mode tensors of ``ns``; user-facing errors when it yields nothing."""
  check_input(ns, converter)
  try:
    tensors = converter.to_tensors(ns, "infer")
  except ValueError as e:
    raise NoExtractedExamplesError(f"{_name(ns)}: {e}") from e
  if not len(tensors):
    raise NoExtractedExamplesError(f"{_name(ns)} {no_example}")
  return tensors


def extract_one(ns, converter, steps_per_bar: int = 16):
  """The single example of ``ns`` (Magenta's TrainedModel.encode contract)."""
  tensors = _infer_tensors(
      ns, converter,
      f"yields no example: the model needs one {converter_window_desc(converter)} "
      "window in 4/4 with a single tempo; pass a longer clip, or a task mode (humanize, "
      "drumify, infill, transfer) that chunks any length")
  if len(tensors) > 1:
    raise MultipleExtractedExamplesError(
        f"{_name(ns)} yields {len(tensors)} candidate windows; encode needs exactly one. "
        f"Trim the clip to one window ({converter_window_desc(converter)}). Candidates:\n"
        + _window_summary(tensors, steps_per_bar), tensors)
  return tensors


def converter_window_desc(converter) -> str:
  bars = getattr(converter, "split_bars", None) or getattr(converter, "slice_bars", None)
  return f"{bars}-bar" if bars else "model-length"


# ----------------------------------------------------------------------------- latent maths


def slerp(p0: np.ndarray, p1: np.ndarray, t: np.ndarray) -> np.ndarray:
  """Spherical interpolation (Magenta's ``_slerp``) for each ``t``: ``[len(t), z]``."""
  p0, p1 = np.asarray(p0, np.float64), np.asarray(p1, np.float64)
  cos = np.dot(p0 / np.linalg.norm(p0), p1 / np.linalg.norm(p1))
  omega = np.arccos(np.clip(cos, -1.0, 1.0))
  t = np.asarray(t, np.float64)[:, None]
  if np.sin(omega) < 1e-8:
    return ((1 - t) * p0 + t * p1).astype(np.float32)
  so = np.sin(omega)
  return (np.sin((1 - t) * omega) / so * p0 + np.sin(t * omega) / so * p1).astype(np.float32)


def lerp(p0: np.ndarray, p1: np.ndarray, t: np.ndarray) -> np.ndarray:
  t = np.asarray(t, np.float32)[:, None]
  return ((1 - t) * np.asarray(p0) + t * np.asarray(p1)).astype(np.float32)


def bilinear_grid(corners: np.ndarray, rows: int, cols: int) -> np.ndarray:
  """magenta.js's 4-corner grid: ``[rows, cols, z]`` from corners (top-left, top-right,
  bottom-left, bottom-right)."""
  c = np.asarray(corners, np.float32)
  if c.shape[0] != 4:
    raise ValueError(f"a grid needs 4 corners, got {c.shape[0]}")
  u = np.linspace(0, 1, cols, dtype=np.float32)[None, :, None]
  v = np.linspace(0, 1, rows, dtype=np.float32)[:, None, None]
  top = (1 - u) * c[0] + u * c[1]
  bottom = (1 - u) * c[2] + u * c[3]
  return (1 - v) * top + v * bottom


# ----------------------------------------------------------------------------- the model


def _source_digest() -> str:
  """Hash of the code that defines the exported computations."""
  files = sorted(pathlib.Path(models.__file__).parent.glob("*.py")) + [pathlib.Path(__file__)]
  digest = hashlib.sha1(jax.__version__.encode())
  for f in files:
    digest.update(f.read_bytes())
  return digest.hexdigest()


def _exported(fn, args, key: str, config):
  """``jax.export`` of ``fn`` at ``args``' shapes, cached under ``CACHE_DIR/export``."""
  from jax import export  # pylint: disable=g-import-not-at-top
  config_json = config.to_json_best_effort(sort_keys=True)
  stamp = f"{_source_digest()}|{jax.default_backend()}|{config_json}|{key}"
  path = CACHE_DIR / "export" / (hashlib.sha1(stamp.encode()).hexdigest() + ".bin")
  if path.exists():
    return export.deserialize(bytearray(path.read_bytes()))
  shapes = jax.tree.map(lambda a: jax.ShapeDtypeStruct(np.shape(a), a.dtype), args)
  exp = export.export(fn)(*shapes)
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_suffix(f".{os.getpid()}.tmp")
  tmp.write_bytes(exp.serialize())
  tmp.replace(path)
  return exp


def _bucket(n: int, max_batch: int) -> int:
  return min(max_batch, 1 << max(0, (n - 1).bit_length()))


class MusicVAEModel:
  """A trained model: encode / decode / sample / interpolate / similar."""

  def __init__(self, config: ml_collections.ConfigDict, params: Any,
               max_batch_size: int = 8):
    self.config = config
    self.params = jax.device_put(params)
    self.model = models.build_model(config)
    self.spec = self.model.spec
    self.converter = config_lib.make_converter(config.data)
    self.max_batch_size = max_batch_size
    model = self.model

    def encode_fn(params, inputs, controls, lengths, seed, index):
      mu, sigma = model.apply({"params": params},
                              {"inputs": inputs, "controls": controls, "lengths": lengths},
                              method=model.encode)
      key = jax.random.fold_in(jax.random.PRNGKey(seed), index)
      return mu + sigma * jax.random.normal(key, mu.shape), mu, sigma

    def decode_fn(params, z, controls, seed, index, temperature, greedy, length):
      key = jax.random.fold_in(jax.random.PRNGKey(seed), index)
      return model.apply({"params": params}, z, temperature=None if greedy else temperature,
                         controls=controls, length=length, end_token=self.converter.end_token,
                         method=model.sample, rngs={"sample": key})["outputs"]

    self._encode = jax.jit(encode_fn)
    self._decode_fn = decode_fn
    self._decoders: dict[tuple, Any] = {}

  def _decode(self, params, z, controls, seed, index, temperature, greedy: bool, length: int):
    """The jitted decoder for these shapes, from the on-disk export cache when possible.

    Tracing the LSTM decoder costs more than running it; a serialized ``jax.export``
    of it (keyed by the config, shapes, jax version and the model source) skips that
    in later processes, and the persistent XLA cache then skips compilation.
    """
    args = (params, z, controls, seed, index, temperature)
    key = (greedy, length, z.shape, controls.shape)
    if key not in self._decoders:
      fn = jax.jit(functools.partial(self._decode_fn, greedy=greedy, length=length))
      self._decoders[key] = jax.jit(_exported(fn, args, repr(key), self.config).call)
    return self._decoders[key](*args)

  # --- construction

  @classmethod
  def from_workdir(cls, workdir: PathLike, **kwargs) -> "MusicVAEModel":
    config = load_config(workdir)
    return cls(config, load_workdir_params(workdir, config), **kwargs)

  @classmethod
  def from_pretrained(cls, name: str, folder: PathLike | None = None, **kwargs
                      ) -> "MusicVAEModel":
    """Shipped model ``name`` (float16 weights as float32) from ``folder`` or the registry."""
    return cls(*pretrained.load(name, folder), **kwargs)

  @classmethod
  def from_checkpoint(cls, config, params, **kwargs) -> "MusicVAEModel":
    return cls(config, params, **kwargs)

  @classmethod
  def from_magenta_checkpoint(cls, config, checkpoint: PathLike,
                              var_name_substitutions=(), **kwargs) -> "MusicVAEModel":
    """A model from an original Magenta TF checkpoint (prefix, directory or ``.tar``)."""
    from flax_musicvae.checkpoints import magenta_import  # pylint: disable=g-import-not-at-top
    params, _ = magenta_import.import_params(checkpoint, config, var_name_substitutions)
    return cls(config, params, **kwargs)

  @classmethod
  def init_random(cls, config, seed: int = 0, **kwargs) -> "MusicVAEModel":
    """Untrained parameters (tests, smoke runs)."""
    model = models.build_model(config)
    batch = models.dummy_batch(model.spec, 1)
    rngs = dict(zip(("params", "dropout", "sample"),
                    jax.random.split(jax.random.PRNGKey(seed), 3)))
    return cls(config, jax.jit(lambda: model.init(rngs, batch, train=False))()["params"],
               **kwargs)

  def save(self, workdir: PathLike) -> pathlib.Path:
    return save_workdir(self.config, self.params, workdir)

  @property
  def z_size(self) -> int:
    return self.spec.z_size

  @property
  def length(self) -> int:
    return self.spec.max_seq_len

  # --- tensors

  def _controls(self, controls, n: int, length: int) -> np.ndarray:
    depth = self.spec.control_depth
    if controls is None:
      if depth:
        raise InputError(f"this model is conditioned on {depth}-d controls per step "
                         "(chords or hits): pass controls")
      return np.zeros((n, length, 0), np.float32)
    controls = np.asarray(controls, np.float32)
    if controls.ndim == 2:
      controls = np.broadcast_to(controls, (n,) + controls.shape)
    if controls.shape[1:] != (length, depth):
      raise InputError(f"controls must be [{length}, {depth}] per item, got "
                       f"{controls.shape[1:]}")
    return controls

  def _batched(self, fn, arrays: Sequence[np.ndarray], n: int) -> list[np.ndarray]:
    """Runs ``fn`` over padded chunks of the leading axis; outputs trimmed to ``n``."""
    outs = []
    for start in range(0, n, self.max_batch_size):
      size = min(self.max_batch_size, n - start)
      pad = _bucket(size, self.max_batch_size) - size
      chunk = [np.pad(a[start:start + size], [(0, pad)] + [(0, 0)] * (a.ndim - 1))
               for a in arrays]
      res = fn(*chunk, start)
      res = res if isinstance(res, tuple) else (res,)
      outs.append([np.asarray(r)[:size] for r in res])
    return [np.concatenate(parts) for parts in zip(*outs)]

  def encode_tensors(self, inputs: np.ndarray, lengths: np.ndarray, controls=None,
                     seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(z, mu, sigma)`` of ``[n, length, input_depth]`` inputs."""
    if not self.z_size:
      raise InputError("this model has no encoder (z_size 0)")
    inputs = np.asarray(inputs, np.float32)
    n, length = inputs.shape[:2]
    controls = self._controls(controls, n, length)
    z, mu, sigma = self._batched(
        lambda x, c, l, i: self._encode(self.params, x, c, l, np.uint32(seed), np.uint32(i)),
        [inputs, controls, np.asarray(lengths, np.int32)], n)
    return z, mu, sigma

  def decode_to_tensors(self, z: np.ndarray, temperature: float | None = 0.5,
                        controls=None, length: int | None = None,
                        seed: int = 0) -> np.ndarray:
    """``[n, length, output_depth]`` samples; ``temperature=None`` decodes greedily."""
    z = np.asarray(z, np.float32)
    if z.ndim != 2 or z.shape[1] != self.z_size:
      raise InputError(f"z must be [n, {self.z_size}], got {z.shape}")
    length = length or self.length
    controls = self._controls(controls, len(z), length)
    greedy = temperature is None
    temp = np.float32(1.0 if greedy else temperature)
    (out,) = self._batched(
        lambda zz, c, i: self._decode(self.params, zz, c, np.uint32(seed), np.uint32(i), temp,
                                      greedy, length), [z, controls], len(z))
    return out

  def to_sequences(self, tensors: np.ndarray, controls=None) -> list:
    if controls is not None:
      controls = np.asarray(controls)
      if controls.ndim == 2:
        controls = [controls] * len(tensors)
    return self.converter.from_tensors(list(tensors), controls)

  # --- sequences

  def encode(self, sequences: Sequence[Any], seed: int = 0
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(z, mu, sigma)`` of NoteSequences or MIDI paths, one window each."""
    examples = [extract_one(as_note_sequence(s), self.converter) for s in sequences]
    inputs = np.stack([t.inputs[0] for t in examples])
    controls = np.stack([t.controls[0] for t in examples])
    lengths = np.array([t.lengths[0] for t in examples])
    return self.encode_tensors(inputs, lengths, controls, seed)

  def decode(self, z: np.ndarray, temperature: float | None = 0.5, controls=None,
             length: int | None = None, seed: int = 0) -> list:
    out = self.decode_to_tensors(z, temperature, controls, length, seed)
    return self.to_sequences(out, controls)

  def sample_z(self, n: int, same_z: bool = False, seed: int = 0) -> np.ndarray:
    """``[n, z_size]`` standard normal draws (numpy PCG64: no device work)."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((1 if same_z else n, self.z_size), dtype=np.float32)
    return np.repeat(z, n, 0) if same_z else z

  def sample(self, n: int = 1, length: int | None = None, temperature: float | None = 0.5,
             same_z: bool = False, controls=None, seed: int = 0) -> list:
    """``n`` sequences decoded from z ~ N(0, I)."""
    return self.decode(self.sample_z(n, same_z, seed), temperature, controls, length, seed)

  def interpolate_z(self, z0: np.ndarray, z1: np.ndarray, num_steps: int,
                    method: str = "slerp") -> np.ndarray:
    if num_steps < 2:
      raise InputError(f"num_steps must be >= 2, got {num_steps}")
    fns = {"slerp": slerp, "lerp": lerp}
    if method not in fns:
      raise InputError(f"method must be one of {sorted(fns)}, got {method!r}")
    return fns[method](z0, z1, np.linspace(0, 1, num_steps))

  def interpolate(self, start, end, num_steps: int = 5, method: str = "slerp",
                  temperature: float | None = 0.5, controls=None, seed: int = 0) -> list:
    """Decodes a path between the posterior means of two sequences."""
    _, mu, _ = self.encode([start, end], seed)
    return self.decode(self.interpolate_z(mu[0], mu[1], num_steps, method), temperature,
                       controls, seed=seed)

  def interpolate_grid(self, corners: Sequence[Any], rows: int, cols: int,
                       temperature: float | None = 0.5, seed: int = 0) -> list[list]:
    """magenta.js's bilinear grid between 4 corner sequences: ``rows`` lists of ``cols``."""
    if len(corners) != 4:
      raise InputError(f"a grid needs 4 corner sequences, got {len(corners)}")
    _, mu, _ = self.encode(corners, seed)
    z = bilinear_grid(mu, rows, cols).reshape(rows * cols, -1)
    seqs = self.decode(z, temperature, seed=seed)
    return [seqs[r * cols:(r + 1) * cols] for r in range(rows)]

  def similar(self, sequence, n: int, similarity: float, temperature: float | None = 0.5,
              controls=None, seed: int = 0) -> list:
    """magenta.js ``similar``: decode ``s * mu + (1 - s) * eps``."""
    if not 0.0 <= similarity <= 1.0:
      raise InputError(f"similarity must be in [0, 1], got {similarity}")
    _, mu, _ = self.encode([sequence], seed)
    z = similarity * mu + (1 - similarity) * self.sample_z(n, seed=seed)
    return self.decode(z, temperature, controls, seed=seed)

  def chord_controls(self, chord_names: Sequence[str], length: int | None = None
                     ) -> np.ndarray:
    """Per-step triad one-hots for chord names spread evenly over ``length`` steps."""
    from flax_musicvae.data import chords  # pylint: disable=g-import-not-at-top
    if self.spec.control_depth != chords.NUM_TRIAD_CLASSES:
      raise InputError("this model is not chord-conditioned (use a *_chords config)")
    length = length or self.length
    if not chord_names or length % len(chord_names):
      raise InputError(f"{len(chord_names)} chords cannot split {length} steps evenly")
    try:
      ids = [chords.triad_class(c) for c in chord_names]
    except chords.ChordEncodingError as e:
      raise InputError(str(e)) from e
    per_step = np.repeat(ids, length // len(chord_names))
    return np.eye(chords.NUM_TRIAD_CLASSES, dtype=np.float32)[per_step]


# ----------------------------------------------------------------------------- GrooVAE tasks
#
# Magenta Studio's Groove / Drumify: any-length input -> windows of the model's length
# (the last one padded with silence) -> encode (posterior mean) -> decode -> concatenate,
# trimmed back to the input's bars, at the input's tempo.


def _require_groove(model: MusicVAEModel, option: str, config_hint: str):
  conv = model.converter
  if type(conv).__name__ != "GrooveConverter":
    raise InputError(f"this task needs a GrooVAE model ({config_hint}), got "
                     f"{model.config.name or type(conv).__name__}")
  if option and not getattr(conv, option):
    raise InputError(f"this task needs a model trained with {option} ({config_hint}); "
                     f"{model.config.name!r} was not")
  return dataclasses.replace(conv, split_bars=None, hop_size=None,
                             max_note_dropout_probability=None)


def _qpm(ns) -> float:
  return ns.tempos[0].qpm if ns.tempos else 120.0


def _grid_windows(conv, ns, length: int):
  """Whole-sequence tensors cut into ``length``-step windows: (inputs, outputs, controls,
  steps) with the last window zero-padded."""
  tensors = _infer_tensors(ns, conv, "yields no drum grid: it must be 4/4 with a single tempo")
  steps = tensors.lengths[0]
  pad = -steps % length
  windows = (steps + pad) // length
  cut = lambda a: np.pad(a, ((0, pad), (0, 0))).reshape(windows, length, a.shape[-1])  # noqa: E731
  return cut(tensors.inputs[0]), cut(tensors.outputs[0]), cut(tensors.controls[0]), steps


def _retime(ns, qpm: float):
  """A decoded 120-qpm sequence played at ``qpm`` (same bars)."""
  scale = 120.0 / qpm
  for note in ns.notes:
    note.start_time *= scale
    note.end_time *= scale
  ns.tempos[0].qpm = qpm
  ns.total_time = max((n.end_time for n in ns.notes), default=0.0)
  return ns


def _with_hits(out: np.ndarray, hits: np.ndarray) -> np.ndarray:
  """Decoded ``[..., hits | velocities | offsets]`` with exactly the given ``hits``.

  Groove transfer (GrooVAE paper: the hits of one beat, the groove of another): the hits
  are the control hits, each played with the velocity and offset the decoder gave its
  cell. A hit keeps velocity >= 1 (0 is a MIDI note-off) and an offset just inside
  +-half a step, so it quantizes back onto its own step.
  """
  n = hits.shape[-1]
  out = np.array(out, np.float32)
  hit = hits > 0.5
  out[..., :n] = hit
  out[..., n:2 * n] = np.where(hit, np.maximum(out[..., n:2 * n], 1 / 127), 0.0)
  out[..., 2 * n:] = np.where(hit, np.clip(out[..., 2 * n:], -0.98, 0.98), 0.0)
  return out


def _reconstruct(model: MusicVAEModel, conv, ns, temperature, seed, hits_from=None):
  inputs, _, controls, steps = _grid_windows(conv, ns, model.length)
  lengths = np.full(len(inputs), model.length)
  _, mu, _ = model.encode_tensors(inputs, lengths, controls, seed)
  if hits_from is not None:
    _, _, controls, steps = _grid_windows(conv, hits_from, model.length)
    mu = mu[np.arange(len(controls)) % len(mu)]
  out = model.decode_to_tensors(mu, temperature, controls if controls.shape[-1] else None,
                                seed=seed)
  if hits_from is not None:
    out = _with_hits(out, controls)
  flat = out.reshape(-1, out.shape[-1])[:steps]
  return _retime(conv.from_tensors([flat])[0], _qpm(hits_from or ns))


def humanize(model: MusicVAEModel, ns, temperature: float | None = 0.5, seed: int = 0):
  """Quantized, flat-velocity drums -> a performance (groove_2bar_humanize)."""
  conv = _require_groove(model, "humanize", "configs/groove_2bar_humanize.py")
  return _reconstruct(model, conv, as_note_sequence(ns), temperature, seed)


def rhythm_to_drums(ns, pitch: int = 36):
  """Any rhythm (bassline, taps, drums) as drum hits of one pitch, velocities kept."""
  out = type(ns)()
  out.CopyFrom(ns)
  del out.notes[:]
  for note in ns.notes:
    out.notes.add(pitch=pitch, velocity=note.velocity, start_time=note.start_time,
                  end_time=note.end_time, is_drum=True, instrument=9)
  return out


def drumify(model: MusicVAEModel, ns, temperature: float | None = 0.5, seed: int = 0):
  """Tap2Drum: a rhythm of any instrument -> a full drum groove (tapify models)."""
  conv = _require_groove(model, "tapify", "configs/groove_2bar_tap_fixed_velocity.py")
  ns = as_note_sequence(ns)
  if not ns.notes:
    raise NoExtractedExamplesError(f"{_name(ns)} has no notes to drumify")
  return _reconstruct(model, conv, rhythm_to_drums(ns), temperature, seed)


def _near(times: np.ndarray, t: float, tolerance: float) -> bool:
  """Whether sorted ``times`` has a time closer than ``tolerance`` to ``t``."""
  i = np.searchsorted(times, t)
  return any(abs(times[j] - t) < tolerance for j in (i - 1, i) if 0 <= j < len(times))


def infill(model: MusicVAEModel, ns, keep_original: bool = False,
           temperature: float | None = 0.5, seed: int = 0):
  """Adds (``keep_original``) or replaces the instruments the model infills (closed
  hi-hat for groove_2bar_add_closed_hh); every other note of ``ns`` is kept as played.

  Adding merges: a generated note within half a 16th of a played note of its drum class
  is dropped (the played one stays), so no hit is doubled.
  """
  conv = _require_groove(model, "add_instruments", "configs/groove_2bar_add_closed_hh.py")
  ns = as_note_sequence(ns)
  generated = _reconstruct(model, conv, ns, temperature, seed)
  classes = conv.classes_for("infer")
  infilled = {p: i for i in conv.add_instruments for p in classes[i]}
  new = [n for n in generated.notes if n.pitch in infilled]
  if keep_original:
    half = 60.0 / _qpm(ns) / conv.steps_per_quarter / 2
    played = {i: np.sort([n.start_time for n in ns.notes if infilled.get(n.pitch) == i])
              for i in conv.add_instruments}
    new = [n for n in new if not _near(played[infilled[n.pitch]], n.start_time, half)]
  out = type(ns)()
  out.CopyFrom(ns)
  del out.notes[:]
  out.notes.extend(n for n in ns.notes if keep_original or n.pitch not in infilled)
  out.notes.extend(new)
  out.total_time = max((n.end_time for n in out.notes), default=0.0)
  return out


def transfer(model: MusicVAEModel, hits, groove, temperature: float | None = 0.5,
             seed: int = 0):
  """Groove transfer: exactly the hits (step, drum class) of ``hits``, with the
  velocities and micro-timing decoded from the feel (z) of ``groove``."""
  conv = _require_groove(model, "hits_as_controls",
                         "configs/groove_2bar_hits_control_tfds.py")
  return _reconstruct(model, conv, as_note_sequence(groove), temperature, seed,
                      hits_from=as_note_sequence(hits))
