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
import re
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
  """Raises ``InputError`` for inputs no example can come from, saying why.

  Any meter whose bar is the model's bar length is accepted (Magenta's rule: 16 steps
  per bar at 4 steps per quarter, so 4/4, 2/2 and 8/8, not 3/4 or 6/8).
  """
  if not ns.notes:
    raise NoExtractedExamplesError(f"{_name(ns)} has no notes")
  want = getattr(converter, "steps_per_bar", 16)
  per_quarter = getattr(converter, "steps_per_quarter", 4)
  for ts in ns.time_signatures:
    steps = per_quarter * 4 * ts.numerator / ts.denominator if ts.denominator else 0
    if steps != want:
      raise NoExtractedExamplesError(
          f"{_name(ns)} is in {ts.numerator}/{ts.denominator} time at {ts.time:.2f}s: "
          f"{steps:g} steps per bar, but this model's bars have {want} (e.g. 4/4 or 2/2): "
          f"re-export the clip in a meter of {want // per_quarter} quarter notes a bar")
  drums_only = type(converter).__name__ in ("GrooveConverter", "DrumsConverter")
  if drums_only and not any(n.is_drum for n in ns.notes):
    raise NoExtractedExamplesError(
        f"{_name(ns)} has no drum notes (MIDI channel 10) but this is a drum model: pass a "
        "drum track, or use drumify for a non-drum rhythm")
  if not drums_only and all(n.is_drum for n in ns.notes):
    raise NoExtractedExamplesError(
        f"{_name(ns)} only has drum notes but this model needs pitched instruments")


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


# ----------------------------------------------------------------------------- windows
#
# Bars are numbered from 1, as in a score. A "window" is the model's length in bars
# (``window_bars``) starting at some bar; the converter's own candidates start every
# ``window_hop_bars`` bars (GrooVAE: one window after the other; melodies and drums:
# every bar, Magenta's one-bar hop).


def window_bars(converter) -> int | None:
  """The model's window length in bars (None: the whole sequence is one example)."""
  return getattr(converter, "split_bars", None) or getattr(converter, "slice_bars", None)


def window_hop_bars(converter) -> int:
  """Bars between the starts of the converter's candidate windows."""
  bars = window_bars(converter) or 1
  if hasattr(converter, "split_bars"):  # GrooveConverter: hop_size steps (default a window)
    hop = getattr(converter, "hop_size", None)
    return max(1, hop // converter.steps_per_bar) if hop else bars
  return 1


def bar_seconds(ns, converter) -> float:
  """Length of one bar of ``ns`` in seconds (its first tempo; 120 qpm without one)."""
  qpm = ns.tempos[0].qpm if ns.tempos else 120.0
  per_quarter = getattr(converter, "steps_per_quarter", 4)
  return 60.0 / qpm * getattr(converter, "steps_per_bar", 16) / per_quarter


def num_bars(ns, converter) -> int:
  """Bars that hold a note onset of ``ns`` (a note sounding on into a bar does not count)."""
  bar = bar_seconds(ns, converter)
  step = bar / getattr(converter, "steps_per_bar", 16)
  last = max((n.start_time for n in ns.notes), default=0.0)
  return int((last + step / 2) // bar) + 1


def cut_bars(ns, start_bar: int, bars: int, converter):
  """Bars ``start_bar .. start_bar + bars - 1`` (1-based) of ``ns`` as a sequence from 0 s.

  A note belongs to the bar its onset quantizes into (an onset up to half a step
  early stays in the window, at 0 s); tempos, meters and chord symbols in force at
  the window's start move to 0 s.
  """
  from note_seq import sequences_lib  # pylint: disable=g-import-not-at-top
  if start_bar < 1:
    raise InputError(f"bars are numbered from 1, got start bar {start_bar}")
  bar = bar_seconds(ns, converter)
  half_step = bar / getattr(converter, "steps_per_bar", 16) / 2
  begin = (start_bar - 1) * bar
  lo = max(0.0, begin - half_step)
  out = sequences_lib.extract_subsequence(ns, lo, begin + bars * bar - half_step)
  shift = lo - begin  # -half_step, or 0 at the first bar
  for items in (out.tempos, out.time_signatures, out.key_signatures, out.text_annotations,
                out.control_changes, out.pitch_bends):
    for item in items:
      item.time = max(0.0, item.time + shift)
  for note in out.notes:
    note.start_time = max(0.0, note.start_time + shift)
    note.end_time = max(note.start_time + half_step, note.end_time + shift)
  out.total_time = bars * bar
  out.filename = ns.filename
  return out


@dataclasses.dataclass(frozen=True)
class Window:
  """A candidate window: its first bar (1-based), its length and its examples."""

  start_bar: int
  bars: int
  tensors: Any

  @property
  def label(self) -> str:
    return f"bars {self.start_bar}-{self.start_bar + self.bars - 1}"


def _is_groove(converter) -> bool:
  return type(converter).__name__ == "GrooveConverter"


def _groove_window(ns, converter, start_bar: int, bars: int):
  """GrooVAE window from the whole sequence's grid (as the converter cuts its windows:
  an onset played early into the window keeps its micro-timing), silence-padded."""
  whole = dataclasses.replace(converter, split_bars=None, hop_size=None,
                              max_note_dropout_probability=None)
  grid = _infer_tensors(ns, whole, "yields no drum grid")
  steps = bars * converter.steps_per_bar
  begin = (start_bar - 1) * converter.steps_per_bar
  cut = lambda a: np.pad(a[begin:begin + steps], ((0, max(0, begin + steps - len(a))),  # noqa: E731
                                                  (0, 0)))
  from flax_musicvae.data import converter as converter_lib  # pylint: disable=g-import-not-at-top
  return converter_lib.ConverterTensors([cut(grid.inputs[0])], [cut(grid.outputs[0])],
                                        [cut(grid.controls[0])], [steps])


def candidate_windows(ns, converter) -> list[Window]:
  """Every window the converter's hop gives that yields an example, in bar order."""
  check_input(ns, converter)
  bars = window_bars(converter)
  if bars is None:
    return [Window(1, num_bars(ns, converter), _infer_tensors(ns, converter, "yields nothing"))]
  if _is_groove(converter):  # every window of the grid, as the converter's
    return [Window(start, bars, None) for start in
            range(1, num_bars(ns, converter) - bars + 2, window_hop_bars(converter))]
  out = []
  for start in range(1, num_bars(ns, converter) - bars + 2, window_hop_bars(converter)):
    try:
      tensors = converter.to_tensors(cut_bars(ns, start, bars, converter), "infer")
    except ValueError:
      continue
    if len(tensors):
      out.append(Window(start, bars, tensors))
  return out


def list_windows(windows: Sequence[Window], shown: int = 6) -> str:
  """``bars 1-2, 3-4, ..., 53-54``: one line, however many windows."""
  labels = [w.label.removeprefix("bars ") for w in windows]
  if len(labels) > shown + 1:
    labels = labels[:shown] + ["...", labels[-1]]
  return "bars " + ", ".join(labels)


def extract_window(ns, converter, start_bar: int):
  """The example of the window starting at bar ``start_bar`` (1-based) of ``ns``."""
  check_input(ns, converter)
  bars = window_bars(converter)
  if bars is None:
    raise InputError("this model takes whole sequences: --start_bar does not apply")
  total = num_bars(ns, converter)
  if start_bar < 1 or start_bar + bars - 1 > total:
    raise NoExtractedExamplesError(
        f"{_name(ns)} has {total} bars: a {bars}-bar window starts at bar 1 .. "
        f"{max(1, total - bars + 1)}, not {start_bar}")
  window = Window(start_bar, bars, None)
  if _is_groove(converter):
    return _groove_window(ns, converter, start_bar, bars)
  tensors = _infer_tensors(
      cut_bars(ns, start_bar, bars, converter), converter,
      f"{window.label} yield no example (e.g. rests, or notes outside the model's range)")
  if len(tensors) > 1:
    raise MultipleExtractedExamplesError(
        f"{_name(ns)} {window.label} hold {len(tensors)} melodies (instruments or "
        "voices); keep one in the file", tensors)
  return tensors


def extract_one(ns, converter, start_bar: int | None = None):
  """The single example of ``ns`` (Magenta's TrainedModel.encode contract), or of its
  window starting at bar ``start_bar`` (1-based)."""
  if start_bar is not None:
    return extract_window(ns, converter, start_bar)
  tensors = _infer_tensors(
      ns, converter,
      f"yields no example: the model needs one {converter_window_desc(converter)} "
      "window with 16 steps a bar (e.g. 4/4 or 2/2) and a single tempo; pass a longer "
      "clip, or a mode that runs over any length (reconstruct, humanize, drumify, infill, "
      "transfer)")
  if len(tensors) > 1:
    windows = candidate_windows(ns, converter)
    raise MultipleExtractedExamplesError(
        f"{_name(ns)} yields {len(windows) or len(tensors)} candidate "
        f"{converter_window_desc(converter)} windows"
        + (f" ({list_windows(windows)})" if windows else "")
        + "; pass --start_bar=N for the window from bar N", tensors)
  return tensors


def _per_input(start_bars, n: int) -> list:
  """``start_bars`` (None, one bar for all, or one per input) as a list of ``n``."""
  if start_bars is None or isinstance(start_bars, (int, np.integer)):
    return [start_bars] * n
  start_bars = list(start_bars)
  if len(start_bars) == 1:
    return start_bars * n
  if len(start_bars) != n:
    raise InputError(f"{len(start_bars)} start bars for {n} inputs: give one for all or "
                     "one per input")
  return start_bars


def set_qpm(ns, qpm: float):
  """``ns`` played at ``qpm`` (same bars and steps; times scaled, one tempo)."""
  if qpm <= 0:
    raise InputError(f"qpm must be > 0, got {qpm}")
  scale = (ns.tempos[0].qpm if ns.tempos else 120.0) / qpm
  for note in ns.notes:
    note.start_time *= scale
    note.end_time *= scale
  for items in (ns.time_signatures, ns.key_signatures, ns.text_annotations,
                ns.control_changes, ns.pitch_bends):
    for item in items:
      item.time *= scale
  del ns.tempos[:]
  ns.tempos.add(qpm=qpm)
  ns.total_time *= scale
  return ns


_SIZE_PATTERNS = {  # Magenta variable names whose shapes give the RNN widths, layer by layer
    "enc_rnn_size": re.compile(r"^encoder/(?:hierarchical_level_0/)?cell_(\d+)/"
                               r"bidirectional_rnn/fw/multi_rnn_cell/cell_0/lstm_cell/kernel$"),
    "dec_rnn_size": re.compile(r"^(?:core_decoder/(?:core_decoder_0/)?)?decoder/"
                               r"multi_rnn_cell/cell_(\d+)/lstm_cell/kernel$"),
}


def checkpoint_sizes(shapes: dict[str, Sequence[int]]) -> dict[str, Any]:
  """``z_size``, ``enc_rnn_size`` and ``dec_rnn_size`` read off a Magenta checkpoint's
  variable shapes (``{name: shape}``); the ones it has no variables for are left out."""
  sizes = {}
  if "encoder/mu/kernel" in shapes:
    sizes["z_size"] = int(shapes["encoder/mu/kernel"][1])
  for key, pattern in _SIZE_PATTERNS.items():
    layers = sorted((int(m[1]), int(shape[1]) // 4) for name, shape in shapes.items()
                    if (m := pattern.match(name)))
    if layers:
      sizes[key] = tuple(width for _, width in layers)
  return sizes


def with_checkpoint_sizes(config, checkpoint: PathLike):
  """``(config with the checkpoint's sizes, sizes found, the config's own sizes)``."""
  from flax_musicvae.checkpoints import tensor_bundle  # pylint: disable=g-import-not-at-top
  found = checkpoint_sizes({k: shape for k, (shape, _)
                            in tensor_bundle.list_variables(checkpoint).items()})
  given = {k: (tuple(config.model[k]) if isinstance(config.model[k], (tuple, list))
               else config.model[k]) for k in found}
  config = ml_collections.ConfigDict(config.to_dict())
  config.model.update(found)
  return config, found, given


def _one_line(message: str, shown: int = 2) -> str:
  """A multi-line mismatch listing as one line: each heading with its first items."""
  parts, items = [], []
  for line in message.splitlines()[1:]:
    if line.startswith("    "):
      items.append(line.strip())
    else:
      if items:
        parts[-1] += " " + ", ".join(items[:shown]) + (", ..." if len(items) > shown else "")
      parts.append(line.strip())
      items = []
  if items and parts:
    parts[-1] += " " + ", ".join(items[:shown]) + (", ..." if len(items) > shown else "")
  return "; ".join(parts) or message.strip()


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
    from flax_musicvae.checkpoints import magenta_import  # pylint: disable=g-import-not-at-top
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


def reconstruct(model: MusicVAEModel, ns, temperature: float | None = 0.5, seed: int = 0,
                start_bar: int | None = None):
  """Encode -> decode (posterior means) of ``ns`` at its tempo: the window starting at
  bar ``start_bar`` (1-based), or every window of the model's length, one after the
  other, stitched (GrooVAE: the last one padded with silence, as the tasks below;
  melodies: a window with no melody stays silent, one with several keeps the first)."""
  ns = as_note_sequence(ns)
  conv = model.converter
  bars = window_bars(conv)
  if start_bar is not None:
    starts, examples = [1], [extract_window(ns, conv, start_bar)]
  elif _is_groove(conv):
    whole = dataclasses.replace(conv, split_bars=None, hop_size=None,
                                max_note_dropout_probability=None)
    return _reconstruct(model, whole, ns, temperature, seed)
  elif bars is None:
    starts, examples = [1], [extract_one(ns, conv)]
  else:
    check_input(ns, conv)
    starts, examples = [], []
    for start in range(1, num_bars(ns, conv) + 1, bars):
      try:
        tensors = conv.to_tensors(cut_bars(ns, start, bars, conv), "infer")
      except ValueError:
        continue
      if len(tensors):
        starts.append(start)
        examples.append(tensors)
  if not examples:
    raise NoExtractedExamplesError(f"{_name(ns)} yields no {converter_window_desc(conv)} "
                                   "window to reconstruct")
  controls = np.stack([t.controls[0] for t in examples])
  _, mu, _ = model.encode_tensors(np.stack([t.inputs[0] for t in examples]),
                                  np.array([t.lengths[0] for t in examples]), controls, seed)
  decoded = model.decode(mu, temperature, controls if controls.shape[-1] else None, seed=seed)
  out = type(ns)()
  out.tempos.add(qpm=120.0)  # the converters decode at 120 qpm
  out.ticks_per_quarter = ns.ticks_per_quarter or 220
  bar = 60.0 / 120.0 * conv.steps_per_bar / conv.steps_per_quarter
  for start, seq in zip(starts, decoded):
    for note in seq.notes:
      new = out.notes.add()
      new.CopyFrom(note)
      new.start_time += (start - 1) * bar
      new.end_time += (start - 1) * bar
  out.total_time = max([(starts[-1] - 1 + (bars or 0)) * bar]
                       + [n.end_time for n in out.notes])
  return set_qpm(out, _qpm(ns))


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
  tensors = _infer_tensors(
      ns, conv, "yields no drum grid: it needs 16 steps a bar (e.g. 4/4 or 2/2) and a single tempo")
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
