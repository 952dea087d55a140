"""The studio's model work: models loaded once, uploads checked, clips for the page.

Every input reaches the models as MIDI bytes (an upload, or a clip the page got back
earlier), so one checked path parses them all. A clip for the page is a dict holding
its MIDI (base64), its notes (pitch, velocity, start, end, drum row) and its length in
bars at its tempo. User mistakes raise :class:`StudioError` (or the library's
``InputError`` / ``AudioError``), whose message the page shows.
"""

from __future__ import annotations

import base64
import dataclasses
import io
import pathlib
import threading
from typing import Any, Callable

import note_seq
from note_seq import drums_encoder_decoder
from note_seq.protobuf import music_pb2
import numpy as np

from flax_musicvae import attributes
from flax_musicvae import audio_taps
from flax_musicvae import config_lib
from flax_musicvae import inference
from flax_musicvae import pretrained

#: The shipped model each GrooVAE task uses unless the studio is told otherwise.
TASK_MODELS = {"humanize": "groove_2bar_humanize", "drumify": "groove_2bar_tap_fixed_velocity",
               "infill": "groove_2bar_add_closed_hh", "transfer": None}
TASKS = tuple(TASK_MODELS)
STEPS_PER_QUARTER = 4


class StudioError(ValueError):
  """A request the studio cannot serve; the message says what to change."""


@dataclasses.dataclass(frozen=True)
class Limits:
  """Bounds on one request, so no click can occupy the machine for minutes."""

  max_outputs: int = 16
  max_steps: int = 16
  max_bars: int = 128
  max_taps: int = 2048


# ----------------------------------------------------------------------------- models


@dataclasses.dataclass(frozen=True)
class ModelSource:
  """Where a model comes from: a shipped name, a workdir, or a Magenta checkpoint + config."""

  pretrained: str | None = None
  workdir: str | None = None
  checkpoint_file: str | None = None
  config: str | None = None

  @classmethod
  def parse(cls, spec: str) -> "ModelSource":
    """A directory with a config.json is a workdir, anything else a shipped model name."""
    if (pathlib.Path(spec) / "config.json").is_file():
      return cls(workdir=spec)
    return cls(pretrained=spec)

  @property
  def label(self) -> str:
    return self.pretrained or self.workdir or str(self.checkpoint_file)

  def load(self) -> inference.MusicVAEModel:
    if self.workdir:
      return inference.MusicVAEModel.from_workdir(self.workdir)
    if self.checkpoint_file:
      if not self.config:
        raise StudioError("--checkpoint_file needs --config (the Magenta config it was "
                          "trained with)")
      return inference.MusicVAEModel.from_magenta_checkpoint(config_lib.load(self.config),
                                                             self.checkpoint_file)
    return inference.MusicVAEModel.from_pretrained(self.pretrained)

  def folder(self) -> pathlib.Path | None:
    """The folder that may hold ``attribute_*.npz`` vectors for this model."""
    if self.workdir:
      return pathlib.Path(self.workdir)
    if self.pretrained:
      try:
        return pretrained.model_dir(self.pretrained)
      except FileNotFoundError:
        return None
    return None


def is_drum_model(model: inference.MusicVAEModel) -> bool:
  return type(model.converter).__name__ in ("GrooveConverter", "DrumsConverter")


def window_bars(model: inference.MusicVAEModel) -> int:
  """Bars in one example of the model (whole-sequence models: its length at 16 steps a bar)."""
  return (inference.window_bars(model.converter)
          or max(1, model.length // (4 * STEPS_PER_QUARTER)))


# ----------------------------------------------------------------------------- MIDI


def parse_midi(data: bytes, name: str = "the upload"):
  """A NoteSequence with notes from uploaded bytes, or a clear ``InputError``/``StudioError``."""
  ns = inference.parse_midi(data, name)
  if not ns.notes:
    raise StudioError(f"{name}: the MIDI file has no notes")
  ns.filename = name
  return ns


def midi_bytes(ns) -> bytes:
  out = io.BytesIO()
  note_seq.note_sequence_to_pretty_midi(ns).write(out)
  return out.getvalue()


def qpm_of(ns) -> float:
  return ns.tempos[0].qpm if ns.tempos else 120.0


def bar_seconds(ns) -> float:
  return 60.0 / qpm_of(ns) * 4


def bar_count(ns) -> int:
  """Bars holding a note onset (an onset half a 16th early counts in the next bar): a
  clip's length for the page, whatever the model."""
  bar = bar_seconds(ns)
  last = max((n.start_time for n in ns.notes), default=0.0)
  return int((last + bar / 32) // bar) + 1


def drum_row(pitch: int) -> int:
  """The drum-grid row (0 kick .. 8 ride) of a GM drum pitch; -1 for other pitches."""
  for row, pitches in enumerate(drums_encoder_decoder.DEFAULT_DRUM_TYPE_PITCHES):
    if pitch in pitches:
      return row
  return -1


def clip(ns, name: str, bars: int | None = None) -> dict[str, Any]:
  """What the page needs of a sequence: MIDI, notes, tempo and length."""
  bars = bars or bar_count(ns)
  notes = sorted(ns.notes, key=lambda n: (n.start_time, n.pitch))
  return {
      "name": name,
      "midi": base64.b64encode(midi_bytes(ns)).decode("ascii"),
      "qpm": qpm_of(ns),
      "bars": bars,
      "seconds": bars * bar_seconds(ns),
      "drums": bool(notes) and all(n.is_drum for n in notes),
      "notes": [[n.pitch, n.velocity, round(n.start_time, 4), round(n.end_time, 4),
                 drum_row(n.pitch) if n.is_drum else -1] for n in notes],
  }


# ----------------------------------------------------------------------------- the studio


class Studio:
  """The models of one studio session and the operations the page calls.

  Models load on first use and stay loaded; one lock serializes model calls (the
  jitted functions stay compiled for the shapes already seen).
  """

  def __init__(self, main: ModelSource, tasks: dict[str, ModelSource | None] | None = None,
               attribute_files: list[str] | None = None, limits: Limits = Limits()):
    self.main = main
    self.tasks = {t: ModelSource.parse(n) if n else None for t, n in TASK_MODELS.items()}
    self.tasks.update(tasks or {})
    self.limits = limits
    self._models: dict[ModelSource, inference.MusicVAEModel] = {}
    self._lock = threading.RLock()
    self._attribute_files = list(attribute_files or [])
    self._attributes = None

  # --- models

  def model(self, source: ModelSource) -> inference.MusicVAEModel:
    with self._lock:
      if source not in self._models:
        self._models[source] = source.load()
      return self._models[source]

  def task_model(self, task: str) -> inference.MusicVAEModel:
    if task not in self.tasks:
      raise StudioError(f"unknown task {task!r}; one of {', '.join(TASKS)}")
    source = self.tasks[task]
    if source is None:
      raise StudioError(f"{task} needs a GrooVAE model trained for it (e.g. configs/"
                        "groove_2bar_hits_control_tfds.py): start the studio with "
                        f"--{task}_model=WORKDIR")
    return self.model(source)

  def attributes(self) -> dict[str, Any]:
    """Attribute vectors: ``--attribute_file`` ones and ``attribute_*.npz`` by the model."""
    if self._attributes is None:
      files = [pathlib.Path(f) for f in self._attribute_files]
      folder = self.main.folder()
      if folder is not None and folder.is_dir():
        files += sorted(folder.glob("attribute_*.npz"))
      vectors = {}
      z_size = self.model(self.main).z_size
      for f in files:
        vec = attributes.AttributeVector.load(f)
        if vec.vector.shape[-1] == z_size:
          vectors[vec.name] = vec
      self._attributes = vectors
    return self._attributes

  def warm(self) -> None:
    """Loads the main model and compiles its one-sample decoder."""
    self.generate(1, 0.5, 0)

  def warm_tasks(self) -> None:
    """Loads the task models and compiles them on a 2-bar beat, so a first click is fast."""
    beat = music_pb2.NoteSequence(ticks_per_quarter=220)
    beat.tempos.add(qpm=120)
    beat.time_signatures.add(numerator=4, denominator=4)
    for step in range(32):
      for pitch in ([36] if step % 8 == 0 else [38] if step % 8 == 4 else []) + [42]:
        beat.notes.add(pitch=pitch, velocity=80, start_time=step / 8, end_time=step / 8 + 0.1,
                       is_drum=True, instrument=9)
    beat.total_time = 4.0
    for task in TASKS:
      if task != "transfer" and self.tasks.get(task) is not None:
        self.groove(task, beat, 0.5, 0)

  def info(self) -> dict[str, Any]:
    model = self.model(self.main)
    return {"model": self.main.label, "config": model.config.get("name", ""),
            "drums": is_drum_model(model), "bars": window_bars(model), "z_size": model.z_size,
            "attributes": sorted(self.attributes()),
            "tasks": {t: (s.label if s else None) for t, s in self.tasks.items()},
            "limits": dataclasses.asdict(self.limits)}

  # --- checks

  def _count(self, value: int, what: str, high: int) -> int:
    if not 1 <= value <= high:
      raise StudioError(f"{what} must be 1 .. {high}, got {value}")
    return value

  def sequence(self, data: bytes, name: str):
    ns = parse_midi(data, name)
    bars = bar_count(ns)
    if bars > self.limits.max_bars:
      raise StudioError(f"{name} has {bars} bars; the studio takes at most "
                        f"{self.limits.max_bars}: trim the clip")
    return ns

  @staticmethod
  def _temperature(value: float) -> float | None:
    if not 0.0 <= value <= 10.0:
      raise StudioError(f"temperature must be 0 .. 10 (0 decodes greedily), got {value}")
    return value or None

  def _shift(self, z: np.ndarray, strengths: dict[str, float] | None) -> np.ndarray:
    vectors = self.attributes()
    for name, strength in (strengths or {}).items():
      if name not in vectors:
        raise StudioError(f"no attribute vector {name!r}; have {sorted(vectors) or 'none'}")
      z = vectors[name].apply(z, float(strength))
    return z

  def _locked(self, fn: Callable[[], Any]) -> Any:
    with self._lock:
      return fn()

  # --- operations

  def generate(self, n: int, temperature: float, seed: int,
               strengths: dict[str, float] | None = None) -> list[dict[str, Any]]:
    model = self.model(self.main)
    n = self._count(n, "samples", self.limits.max_outputs)
    temp = self._temperature(temperature)
    z = self._shift(model.sample_z(n, seed=seed), strengths)
    seqs = self._locked(lambda: model.decode(z, temp, seed=seed))
    bars = window_bars(model)
    return [clip(ns, f"sample {seed}.{i + 1}", bars) for i, ns in enumerate(seqs)]

  def _mu(self, model, ns, start_bar: int, seed: int) -> np.ndarray:
    """The posterior mean of the window of ``ns`` that starts at bar ``start_bar``."""
    _, mu, _ = self._locked(lambda: model.encode([ns], seed, start_bars=start_bar))
    return mu

  def interpolate(self, a, b, start_a: int, start_b: int, steps: int, method: str,
                  temperature: float, seed: int) -> list[dict[str, Any]]:
    model = self.model(self.main)
    steps = self._count(steps, "steps", self.limits.max_steps)
    if steps < 2:
      raise StudioError("interpolation needs at least 2 steps")
    temp = self._temperature(temperature)
    mu = np.concatenate([self._mu(model, a, start_a, seed), self._mu(model, b, start_b, seed)])
    z = model.interpolate_z(mu[0], mu[1], steps, method)
    seqs = self._locked(lambda: model.decode(z, temp, seed=seed))
    bars = window_bars(model)
    return [clip(ns, f"step {i + 1}/{steps} (t={i / (steps - 1):.2f})", bars)
            for i, ns in enumerate(seqs)]

  def similar(self, ns, start_bar: int, n: int, similarity: float, temperature: float,
              seed: int, strengths: dict[str, float] | None = None) -> list[dict[str, Any]]:
    """magenta.js ``similar``: decode ``s * mu + (1 - s) * eps`` around the window's mu."""
    model = self.model(self.main)
    n = self._count(n, "variations", self.limits.max_outputs)
    if not 0.0 <= similarity <= 1.0:
      raise StudioError(f"similarity must be 0 .. 1, got {similarity}")
    temp = self._temperature(temperature)
    mu = self._mu(model, ns, start_bar, seed)
    z = similarity * mu + (1 - similarity) * model.sample_z(n, seed=seed)
    seqs = self._locked(lambda: model.decode(self._shift(z, strengths), temp, seed=seed))
    bars = window_bars(model)
    return [clip(s, f"similar {i + 1} (s={similarity:g})", bars) for i, s in enumerate(seqs)]

  def taps(self, times: list[float], strengths: list[float], qpm: float):
    """Keyboard taps (seconds from the first downbeat, strengths 0..1) as a tap sequence."""
    if not 20 <= qpm <= 300:
      raise StudioError(f"tempo must be 20 .. 300 qpm, got {qpm:g}")
    if not times:
      raise StudioError("no taps recorded: press a key in time while recording")
    if len(times) > self.limits.max_taps or len(times) != len(strengths):
      raise StudioError(f"taps: at most {self.limits.max_taps}, one strength per tap")
    t = np.asarray(times, np.float64)
    if not np.all(np.isfinite(t)) or t.min() < 0 or t.max() > self.limits.max_bars * 240 / qpm:
      raise StudioError("tap times must be seconds from the first downbeat, within the "
                        "bar limit")
    order = np.argsort(t)
    return audio_taps.taps_to_note_sequence(t[order], np.clip(strengths, 0, 1)[order], qpm)

  def wav_taps(self, data: bytes, name: str, qpm: float):
    """A WAV recording of tapping as a tap sequence (onset detection)."""
    if not data.startswith(b"RIFF"):
      raise StudioError(f"{name}: not a WAV file (no 'RIFF' header); record a PCM .wav")
    if not 20 <= qpm <= 300:
      raise StudioError(f"tempo must be 20 .. 300 qpm, got {qpm:g}")
    try:
      audio, rate = audio_taps.read_wav(_Named(data, name))
    except audio_taps.AudioError:
      raise
    except Exception as e:  # pylint: disable=broad-except  # scipy: struct.error on truncation
      raise StudioError(f"{name}: cannot read as a WAV file (truncated or damaged); record "
                        "a PCM .wav") from e
    times, strengths = audio_taps.detect_onsets(audio, rate)
    if not len(times):
      raise StudioError(f"{name}: no taps detected; record louder taps")
    return self.taps(list(times), list(strengths), qpm)

  def groove(self, task: str, ns, temperature: float, seed: int, keep_original: bool = False,
             groove=None) -> dict[str, Any]:
    """A GrooVAE task on ``ns`` (``groove``: the feel for transfer); the result's clip."""
    model = self.task_model(task)
    temp = self._temperature(temperature)
    if task == "transfer":
      if groove is None:
        raise StudioError("transfer needs a second file: the groove to take the feel from")
      out = self._locked(lambda: inference.transfer(model, ns, groove, temp, seed))
    elif task == "infill":
      out = self._locked(lambda: inference.infill(model, ns, keep_original, temp, seed))
    else:
      fn = inference.humanize if task == "humanize" else inference.drumify
      out = self._locked(lambda: fn(model, ns, temp, seed))
    return clip(out, f"{task} of {ns.filename or 'the input'}", bar_count(ns))


class _Named(io.BytesIO):
  """Bytes that print as the upload's name in the library's error messages."""

  def __init__(self, data: bytes, name: str):
    super().__init__(data)
    self._label = name

  def __str__(self) -> str:
    return self._label
