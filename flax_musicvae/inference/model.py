"""``MusicVAEModel``: a trained model's encode / decode / sample / interpolate / similar,
jitted, with its encoders and ``jax.export``-cached decoders shared per config."""

from __future__ import annotations

import functools
import hashlib
import os
import pathlib
from typing import Any, Sequence

import jax
from jax import export
import ml_collections
import numpy as np

from flax_musicvae import config_lib
from flax_musicvae import models
from flax_musicvae import pretrained
from flax_musicvae.checkpoints import magenta_import
from flax_musicvae.data import chords
from flax_musicvae.inference import loading
from flax_musicvae.inference.inputs import InputError, _per_input, as_note_sequence
from flax_musicvae.inference.latent import bilinear_grid, lerp, slerp
from flax_musicvae.inference.loading import (PathLike, _one_line, load_config,
                                             load_workdir_params, save_workdir,
                                             with_checkpoint_sizes)
from flax_musicvae.inference.windows import extract_one


def _source_digest() -> str:
  """Hash of the code that defines the exported computations."""
  files = sorted(pathlib.Path(models.__file__).parent.glob("*.py")) + [pathlib.Path(__file__)]
  digest = hashlib.sha1(jax.__version__.encode())
  for f in files:
    digest.update(f.read_bytes())
  return digest.hexdigest()


def _exported(fn, args, key: str, config):
  """``jax.export`` of ``fn`` at ``args``' shapes, cached under ``CACHE_DIR/export``."""
  config_json = config.to_json_best_effort(sort_keys=True)
  stamp = f"{_source_digest()}|{jax.default_backend()}|{config_json}|{key}"
  path = loading.CACHE_DIR / "export" / (hashlib.sha1(stamp.encode()).hexdigest() + ".bin")
  if path.exists():
    return export.deserialize(bytearray(path.read_bytes()))
  shapes = jax.tree.map(lambda a: jax.ShapeDtypeStruct(np.shape(a), a.dtype), args)
  exp = export.export(fn)(*shapes)
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_suffix(f".{os.getpid()}.tmp")
  tmp.write_bytes(exp.serialize())
  tmp.replace(path)
  return exp


#: Jitted encoders and exported decoders shared by the models of one config: another
#: model of it (a second CLI run in one process, the studio, a test) reuses their
#: compiled programs instead of compiling its own.
_SHARED: dict[tuple, Any] = {}


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

    self._config_key = config.to_json_best_effort(sort_keys=True)
    self._encode = _SHARED.setdefault(("encode", self._config_key), jax.jit(encode_fn))
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
      dtypes = tuple(sorted({str(x.dtype) for x in jax.tree.leaves(params)}))
      shared = ("decode", self._config_key, key, dtypes)
      if shared not in _SHARED:
        fn = jax.jit(functools.partial(self._decode_fn, greedy=greedy, length=length))
        _SHARED[shared] = jax.jit(_exported(fn, args, repr(key), self.config).call)
      self._decoders[key] = _SHARED[shared]
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
                              var_name_substitutions=(), infer_sizes: bool = True,
                              **kwargs) -> "MusicVAEModel":
    """A model from an original Magenta TF checkpoint (prefix, directory or ``.tar``).

    With ``infer_sizes`` the config's ``z_size``, ``enc_rnn_size`` and ``dec_rnn_size``
    are taken from the checkpoint's shapes (:func:`checkpoint_sizes`); a checkpoint
    that still does not fit raises ``InputError``: one line naming the sizes found and
    the config's.
    """
    if infer_sizes:
      config, found, given = with_checkpoint_sizes(config, checkpoint)
    try:
      params, _ = magenta_import.import_params(checkpoint, config, var_name_substitutions)
    except magenta_import.CheckpointMismatchError as e:
      if not infer_sizes:
        raise
      sizes = lambda d: ", ".join(f"{k} {v}" for k, v in d.items()) or "none"  # noqa: E731
      raise InputError(f"{checkpoint} does not fit config {config.get('name') or ''}: "
                       f"checkpoint sizes {sizes(found)}; config sizes {sizes(given)}; "
                       f"{_one_line(str(e))}") from e
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

  def encode(self, sequences: Sequence[Any], seed: int = 0, start_bars=None
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(z, mu, sigma)`` of NoteSequences or MIDI paths, one window each.

    ``start_bars``: the first bar (1-based) of each input's window, one number for all
    or None; without it an input must yield exactly one window (else the error lists
    the candidates).
    """
    starts = _per_input(start_bars, len(sequences))
    examples = [extract_one(as_note_sequence(s), self.converter, b)
                for s, b in zip(sequences, starts)]
    inputs = np.stack([t.inputs[0] for t in examples])
    controls = np.stack([t.controls[0] for t in examples])
    lengths = np.array([t.lengths[0] for t in examples])
    return self.encode_tensors(inputs, lengths, controls, seed)

  def decode(self, z: np.ndarray, temperature: float | None = 0.5, controls=None,
             length: int | None = None, seed: int = 0) -> list:
    out = self.decode_to_tensors(z, temperature, controls, length, seed)
    return self.to_sequences(out, controls)

  def decode_each(self, z: np.ndarray, temperature: float | None = 0.5, controls=None,
                  length: int | None = None, seed: int = 0) -> list:
    """Output ``i`` decoded with seed ``seed + i``: exactly ``decode(z[i:i+1],
    seed=seed + i)``, so one output can be re-made alone (greedy decoding batches)."""
    z = np.asarray(z, np.float32)
    if temperature is None:
      return self.decode(z, None, controls, length, seed)
    per_item = controls is not None and np.ndim(controls) == 3
    return [self.decode(z[i:i + 1], temperature,
                        controls[i:i + 1] if per_item else controls, length, seed + i)[0]
            for i in range(len(z))]

  def sample_each(self, n: int, same_z: bool = False, seed: int = 0) -> np.ndarray:
    """``[n, z_size]``: row ``i`` is ``sample_z(1, seed=seed + i)`` (all the first one
    with ``same_z``), the z of :meth:`decode_each`'s output ``i``."""
    rows = [self.sample_z(1, seed=seed + (0 if same_z else i)) for i in range(n)]
    return np.concatenate(rows) if rows else np.zeros((0, self.z_size), np.float32)

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
                  temperature: float | None = 0.5, controls=None, seed: int = 0,
                  start_bars=None) -> list:
    """Decodes ``num_steps`` points (ends included) on a path between the posterior
    means of two sequences; point ``i`` with seed ``seed + i``."""
    _, mu, _ = self.encode([start, end], seed, start_bars)
    return self.decode_each(self.interpolate_z(mu[0], mu[1], num_steps, method), temperature,
                            controls, seed=seed)

  def interpolate_grid(self, corners: Sequence[Any], rows: int, cols: int,
                       temperature: float | None = 0.5, seed: int = 0,
                       start_bars=None) -> list[list]:
    """magenta.js's bilinear grid between 4 corner sequences (top-left, top-right,
    bottom-left, bottom-right): ``rows`` lists of ``cols``; row-major output ``i`` is
    decoded with seed ``seed + i``."""
    if len(corners) != 4:
      raise InputError(f"a grid needs 4 corner sequences, got {len(corners)}")
    _, mu, _ = self.encode(corners, seed, start_bars)
    z = bilinear_grid(mu, rows, cols).reshape(rows * cols, -1)
    seqs = self.decode_each(z, temperature, seed=seed)
    return [seqs[r * cols:(r + 1) * cols] for r in range(rows)]

  def similar(self, sequence, n: int, similarity: float, temperature: float | None = 0.5,
              controls=None, seed: int = 0, start_bar: int | None = None) -> list:
    """magenta.js ``similar``: decode ``s * mu + (1 - s) * eps``; output ``i`` draws
    ``eps`` and decodes with seed ``seed + i`` (:meth:`sample_each`, :meth:`decode_each`)."""
    if not 0.0 <= similarity <= 1.0:
      raise InputError(f"similarity must be in [0, 1], got {similarity}")
    _, mu, _ = self.encode([sequence], seed, start_bar)
    z = similarity * mu + (1 - similarity) * self.sample_each(n, seed=seed)
    return self.decode_each(z, temperature, controls, seed=seed)

  def chord_controls(self, chord_names: Sequence[str], length: int | None = None
                     ) -> np.ndarray:
    """Per-step triad one-hots for chord names spread evenly over ``length`` steps (one
    chord for a multi-instrument performance model: its steps are not time)."""
    if self.spec.control_depth != chords.NUM_TRIAD_CLASSES:
      raise InputError("this model is not chord-conditioned (use a *_chords config)")
    if self.config.data.converter == "multiperf" and len(chord_names) > 1:
      raise InputError(f"this model plays one bar whose steps are each instrument's events, "
                       f"not time: one chord per sample, not {len(chord_names)}")
    length = length or self.length
    if not chord_names or length % len(chord_names):
      raise InputError(f"{len(chord_names)} chords cannot split {length} steps evenly")
    try:
      ids = [chords.triad_class(c) for c in chord_names]
    except chords.ChordEncodingError as e:
      raise InputError(str(e)) from e
    per_step = np.repeat(ids, length // len(chord_names))
    return np.eye(chords.NUM_TRIAD_CLASSES, dtype=np.float32)[per_step]
