"""Tasks over inputs of any length: ``reconstruct``, and Magenta Studio's GrooVAE tasks
(humanize, drumify, infill, transfer).

Groove / Drumify: any-length input -> windows of the model's length (the last one
padded with silence) -> encode (posterior mean) -> decode -> concatenate, trimmed back
to the input's bars, at the input's tempo.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from flax_musicvae.inference.inputs import (InputError, NoExtractedExamplesError, _infer_tensors,
                                            _name, as_note_sequence, check_input, set_qpm)
from flax_musicvae.inference.model import MusicVAEModel
from flax_musicvae.inference.windows import (_is_groove, converter_window_desc, cut_bars,
                                             extract_one, extract_window, num_bars,
                                             window_bars)


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
