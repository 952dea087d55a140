"""Music while it trains: fixed samples and reconstructions written at every evaluation.

Under the run directory::

  samples/validation/          the fixed validation examples (.mid, .png, .wav), once
  samples/step_<step>/         sample_<i>.mid, reconstruction_<i>.mid, samples.png,
                               reconstructions.png (each validation example above its
                               reconstruction), samples.wav, reconstructions.wav

``train.eval_samples`` (0: none) samples are decoded at temperature 0.5 from fixed z
(``train.seed``) with a fixed sampling seed, and as many validation examples (the first
of the split) are reconstructed from their posterior mean at the same temperature and
seed (one decoder program for both): the files of two steps, or of a resumed run, differ
only by what the model learnt. Models with per-step
controls (chords, hits) are conditioned on those of the same validation examples. WAVs
come from :func:`flax_musicvae.render.render_wav` (FluidSynth, else the numpy synth).
"""

from __future__ import annotations

from typing import Any

from etils import epath
import jax
import ml_collections
from note_seq import sequences_lib
import numpy as np

from flax_musicvae import inference
from flax_musicvae import render
from flax_musicvae import workdir as workdir_lib

SAMPLES = "samples"
TEMPERATURE = 0.5


def unavailable_reason(config: ml_collections.ConfigDict, run: workdir_lib.PathLike
                       ) -> str | None:
  """Why this run writes no samples (None when it does)."""
  if not config.train.get("eval_samples", 0):
    return "train.eval_samples is 0"
  if config.model.get("architecture", "music_vae") == "music_rnn":
    return ("a MusicRNN has no latent code to fix across steps: continue a primer with "
            "python -m flax_musicvae.generate --mode=continue --workdir=<this run>")
  if jax.process_count() > 1:
    return "a multi-host run: generate from its checkpoints instead"
  if not workdir_lib.is_local(run):
    return "samples are written for local run directories only"
  return None


def step_dir(run: workdir_lib.PathLike, step: int) -> epath.Path:
  return workdir_lib.path(run) / SAMPLES / f"step_{step:06d}"


def _concatenated(sequences):
  return sequences_lib.concatenate_sequences(list(sequences))


class EvalSamples:
  """Writes the fixed samples of one run; build once, call :meth:`write` at each eval."""

  def __init__(self, config: ml_collections.ConfigDict, run: workdir_lib.PathLike,
               eval_data: dict[str, np.ndarray]):
    self._run = workdir_lib.path(run)
    self._model = inference.MusicVAEModel(config, None)
    n = min(config.train.eval_samples, len(eval_data["outputs"]))
    self._examples = {k: np.asarray(eval_data[k][:n]) for k in ("inputs", "lengths", "controls")}
    self._outputs = np.asarray(eval_data["outputs"][:n])
    self._z = self._model.sample_z(config.train.eval_samples, seed=config.train.seed)
    self._seed = config.train.seed
    self._controls = None
    if self._model.spec.control_depth:
      self._controls = self._examples["controls"]
      self._z = self._z[:n]

  def _save(self, folder, name: str, sequences, shown=None, titles=None) -> None:
    """One MIDI per sequence, a PNG (of ``shown``, default ``sequences``) and one WAV of
    them in a row."""
    for i, ns in enumerate(sequences):
      render.write_midi(ns, folder / f"{name}_{i}.mid")
    render.save_png(sequences if shown is None else shown, folder / f"{name}s.png", titles)
    midi = render.write_midi(_concatenated(sequences), folder / f"{name}s.mid")
    render.render_wav(midi, folder / f"{name}s.wav")
    midi.unlink()

  def _save_originals(self) -> None:
    folder = self._run / SAMPLES / "validation"
    if folder.exists():
      return
    sequences = self._model.to_sequences(self._outputs, self._controls)
    self._save(folder, "example", sequences,
               titles=[f"validation {i}" for i in range(len(sequences))])

  def write(self, step: int, params: Any) -> epath.Path:
    """The samples and reconstructions of ``params`` under ``samples/step_<step>/``."""
    model = self._model
    model.params = jax.device_put(jax.device_get(params))  # one device, whatever the mesh
    self._save_originals()
    folder = step_dir(self._run, step)
    out = model.decode_to_tensors(self._z, TEMPERATURE, self._controls, seed=self._seed)
    samples = model.to_sequences(out, self._controls)
    self._save(folder, "sample", samples,
               titles=[f"step {step}: sample {i} (fixed z, temperature {TEMPERATURE})"
                for i in range(len(samples))])
    if model.z_size and len(self._outputs):
      e = self._examples
      _, mu, _ = model.encode_tensors(e["inputs"], e["lengths"], e["controls"], self._seed)
      recon = model.to_sequences(model.decode_to_tensors(mu, TEMPERATURE, self._controls,
                                                         seed=self._seed), self._controls)
      originals = model.to_sequences(self._outputs, self._controls)
      pairs = [ns for pair in zip(originals, recon) for ns in pair]
      titles = [t for i in range(len(recon)) for t in
                (f"validation {i}", f"step {step}: its reconstruction (posterior mean)")]
      self._save(folder, "reconstruction", recon, pairs, titles)
    return folder
