"""Continue a primer with a MusicRNN: Magenta's generators (``*_rnn_sequence_generator``).

``generate_events`` is ``EventSequenceRnnModel._generate_events``: the primer runs through
the network from the zero state, then every step samples a class from
``softmax(logits / temperature)`` (numpy ``RandomState.choice``, as Magenta's
``np.random.choice``), turns it into an event (lookback classes repeat the event 1 or 2
bars back) and feeds the encoding of the extended sequence back. Beam search is
``magenta.common.beam_search``: ``beam_size`` copies, each iteration extends every
entry ``branch_factor`` times by ``steps_per_iteration`` steps and keeps the
``beam_size`` entries with the highest log-likelihood (the first iteration takes
``(num_steps - 1) % steps_per_iteration + 1`` steps). ``beam_size=1, branch_factor=1``
is plain sampling.

``continue_sequence`` is the generator around it: quantize the primer, extract its
melody / drum track, pad it to the step where generation starts (Magenta's
``quantize_to_step(start_time, cutoff=0)``, i.e. ``int(steps + 1)``), squash melodies
into the model's note range (transposed to C for melody configs with
``transpose_to_key=0``), generate up to ``int(end_time * steps_per_second)``, transpose
back and render at velocity 100.
"""

from __future__ import annotations

import ast
import dataclasses
import math
from typing import Any, Sequence

import jax
import jax.numpy as jnp
from note_seq import chords_lib
from note_seq import sequences_lib
from note_seq.protobuf import music_pb2
import numpy as np

from flax_musicvae.data import event_utils
from flax_musicvae.data import melody as melody_data
from flax_musicvae.models import music_rnn
from flax_musicvae.music_rnn import data as rnn_data
from flax_musicvae.music_rnn import encodings


class GeneratorError(ValueError):
  """The request cannot be generated (bad primer, sections, options)."""


@dataclasses.dataclass
class GenerateResult:
  events: list[int]            # model-side events (primer + generated)
  chosen: list[int]            # the class drawn at each generated step
  log_likelihood: float
  start_step: int = 0


@dataclasses.dataclass
class MusicRNNGenerator:
  """A trained MusicRNN plus the settings of its Magenta generator."""

  spec: music_rnn.RNNSpec
  params: Any
  encoding: str
  min_note: int = encodings.DEFAULT_MIN_NOTE
  max_note: int = encodings.DEFAULT_MAX_NOTE
  transpose_to_key: int | None = 0
  steps_per_quarter: int = 4
  details: dict | None = None

  def __post_init__(self):
    self.encoder = encodings.make_encoder(self.encoding, min_note=self.min_note,
                                          max_note=self.max_note)
    if (self.encoder.input_size, self.encoder.num_classes) != (self.spec.input_size,
                                                              self.spec.num_classes):
      raise GeneratorError(
          f"encoding {self.encoding!r} has {self.encoder.input_size} inputs / "
          f"{self.encoder.num_classes} classes but the model has {self.spec.input_size} / "
          f"{self.spec.num_classes}")
    self.kind = rnn_data.MusicRNNConverter(encoding=self.encoding).kind
    spec = self.spec
    self._run = jax.jit(lambda p, x: music_rnn.run(p, spec, x, None))
    self._step = jax.jit(lambda p, s, x: music_rnn.step(p, spec, s, x))

  # --------------------------------------------------------------------------- events

  def _inputs(self, events, controls) -> np.ndarray:
    return self.encoder.inputs(events, controls)

  def generate_events(self, primer: Sequence[int], num_steps: int, *,
                      temperature: float = 1.0, beam_size: int = 1, branch_factor: int = 1,
                      steps_per_iteration: int = 1, controls: Sequence[str] | None = None,
                      seed: int | None = None) -> GenerateResult:
    """Extends model-side ``primer`` events to ``num_steps`` events in total."""
    primer = [int(e) for e in primer]
    if not primer:
      raise GeneratorError("primer sequence must have non-zero length")
    if len(primer) >= num_steps:
      raise GeneratorError(f"primer ({len(primer)} steps) must be shorter than num_steps "
                           f"({num_steps})")
    if temperature <= 0:
      raise GeneratorError("temperature must be > 0")
    for name, v in (("beam_size", beam_size), ("branch_factor", branch_factor),
                    ("steps_per_iteration", steps_per_iteration)):
      if v < 1:
        raise GeneratorError(f"{name} must be >= 1, got {v}")
    if self.encoder.conditional:
      if not controls:
        raise GeneratorError(f"{self.encoding} needs a chord per step (controls)")
      controls = list(controls)
      while len(controls) < num_steps + 1:   # Magenta repeats the last chord
        controls.append(controls[-1])
    rs = np.random.RandomState(seed)
    inputs = self._inputs(primer, controls)
    logits, state = self._run(self.params, jnp.asarray(inputs[None]))
    probs = _softmax(np.asarray(logits[0]), temperature)
    labels = self.encoder.labels(primer)
    with np.errstate(divide="ignore"):
      primer_ll = float(np.sum(np.log(probs[np.arange(len(primer) - 1), labels[1:]])))
    last = probs[-1]
    entries = [_Entry(list(primer), [], state, None, primer_ll, last)
               for _ in range(beam_size)]
    total = num_steps - len(primer)
    first = (total - 1) % steps_per_iteration + 1
    entries = self._branches(entries, branch_factor, first, temperature, controls, rs)
    for _ in range((total - first) // steps_per_iteration):
      entries = _prune(entries, beam_size)
      entries = self._branches(entries, branch_factor, steps_per_iteration, temperature,
                               controls, rs)
    best = _prune(entries, 1)[0]
    return GenerateResult(best.events, best.chosen, best.score)

  def _branches(self, entries, branch_factor, steps, temperature, controls, rs):
    if branch_factor > 1:
      entries = [e.copy() for _ in range(branch_factor) for e in entries]
    for _ in range(steps):
      entries = self._generate_step(entries, temperature, controls, rs)
    return entries

  def _generate_step(self, entries, temperature, controls, rs):
    """Feeds pending inputs (if any), samples one class per entry, appends its event."""
    pending = [i for i, e in enumerate(entries) if e.probs is None]
    if pending:
      state = _stack_states([entries[i].state for i in pending])
      x = jnp.asarray(np.stack([entries[i].next_input for i in pending]))
      state, logits = self._step(self.params, state, x)
      probs = _softmax(np.asarray(logits), temperature)
      for j, i in enumerate(pending):
        entries[i].state = _index_state(state, j)
        entries[i].probs = probs[j]
    for e in entries:
      p = e.probs.astype(np.float64)
      index = int(rs.choice(len(p), p=p / p.sum()))
      with np.errstate(divide="ignore"):
        e.score += float(np.log(e.probs[index]))
      e.chosen.append(index)
      e.events.append(self.encoder.class_to_event(index, e.events))
      e.next_input = self._inputs(e.events, controls)[-1]
      e.probs = None
    return entries

  # --------------------------------------------------------------------------- sequences

  def continue_sequence(self, primer: music_pb2.NoteSequence | None, *,
                        num_steps: int | None = None, end_time: float | None = None,
                        temperature: float = 1.0, beam_size: int = 1, branch_factor: int = 1,
                        steps_per_iteration: int = 1, chords: Sequence[str] | None = None,
                        steps_per_chord: int = 16, start_time: float | None = None,
                        seed: int | None = None, qpm: float | None = None
                        ) -> tuple[music_pb2.NoteSequence, GenerateResult]:
    """Continues ``primer`` like Magenta's ``*_rnn_generate`` scripts and generators.

    ``primer`` None: a single middle C (drums: a bass drum), as Magenta's scripts.
    The generate section is ``[start_time, end_time]``; by default it starts one step
    after the primer's last note ends and ends after ``num_steps`` steps in total
    (primer included: Magenta's ``--num_steps``). ``chords`` (Improv RNN): figures,
    one per ``steps_per_chord`` steps from step 0, repeated to the end; they are
    written to the output as chord symbols.
    """
    if primer is None:
      primer = primer_list_to_sequence([(36,)] if self.kind == "drums" else [60], self.kind,
                                       qpm or 120.0, self.steps_per_quarter)
    if qpm is None:
      qpm = primer.tempos[0].qpm if primer.tempos else 120.0
    sps = self.steps_per_quarter * qpm / 60.0
    last_end = max((n.end_time for n in primer.notes), default=0.0)
    if start_time is None:
      start_time = last_end + 1.0 / sps if primer.notes else 0.0
    if last_end > start_time:
      raise GeneratorError(f"the primer's last note ends at {last_end:.3f} s, after the "
                           f"generate section's start {start_time:.3f} s: this model can "
                           "only extend sequences")
    start_step = sequences_lib.quantize_to_step(start_time, sps, quantize_cutoff=0.0)
    if end_time is None:
      if num_steps is None:
        raise GeneratorError("give num_steps or end_time")
      end_step = int(num_steps)
    else:
      end_step = sequences_lib.quantize_to_step(end_time, sps, quantize_cutoff=1.0)
    if end_step <= start_step:
      raise GeneratorError(f"nothing to generate: the section ends at step {end_step}, "
                           f"not after its start step {start_step} (more num_steps?)")
    primer = music_pb2.NoteSequence.FromString(primer.SerializeToString())
    if not primer.tempos:
      primer.tempos.add(qpm=qpm)
    qns = sequences_lib.quantize_note_sequence(primer, self.steps_per_quarter)
    spb = rnn_data.steps_per_bar(qns) or 4 * self.steps_per_quarter
    if self.kind == "drums":
      events, pitch_sets, track_start = _primer_drums(qns, spb, start_step)
    else:
      events, track_start = _primer_melody(qns, spb, start_step)
    controls = None
    if self.kind == "improv":
      if not chords:
        raise GeneratorError("Improv RNN needs chords (e.g. ['C', 'G', 'Am', 'F'])")
      per_step = [chords[(s // steps_per_chord) % len(chords)] for s in range(end_step + 1)]
      controls = per_step[track_start:]
      self.encoder.encode_chords(sorted(set(chords)))   # EncodingError on a bad figure
    amount = 0
    if self.kind != "drums":
      events, amount = rnn_data.squash(np.asarray(events, np.int64), self.min_note,
                                       self.max_note, self.transpose_to_key)
    result = self.generate_events(
        list(events), end_step - track_start, temperature=temperature, beam_size=beam_size,
        branch_factor=branch_factor, steps_per_iteration=steps_per_iteration,
        controls=controls, seed=seed)
    result.start_step = track_start
    if self.kind == "drums":
      drum = encodings.MultiDrumOneHotEncoding()
      sets = pitch_sets + [drum.pitches_from_event(e)
                           for e in result.events[len(pitch_sets):]]
      ns = _drums_to_sequence(sets, track_start, self.steps_per_quarter, qpm)
    else:
      out = rnn_data.transpose(np.asarray(result.events), -amount)
      ns = melody_data.melody_to_sequence(out.tolist(), self.steps_per_quarter,
                                          velocity=100, qpm=qpm)
      _shift(ns, track_start * 60.0 / qpm / self.steps_per_quarter)
      if controls is not None:
        step_time = 60.0 / qpm / self.steps_per_quarter
        chords_lib.add_chords_to_sequence(
            ns, per_step[:end_step], [s * step_time for s in range(end_step)])
    return ns, result


@dataclasses.dataclass
class _Entry:
  events: list[int]
  chosen: list[int]
  state: Any
  next_input: np.ndarray | None
  score: float
  probs: np.ndarray | None

  def copy(self) -> "_Entry":
    return _Entry(list(self.events), list(self.chosen), self.state, self.next_input,
                  self.score, self.probs)


def _prune(entries, k):
  order = sorted(range(len(entries)), key=lambda i: entries[i].score, reverse=True)
  return [entries[i] for i in order[:k]]


def _softmax(logits: np.ndarray, temperature: float) -> np.ndarray:
  z = logits.astype(np.float32) / np.float32(temperature)
  z = z - z.max(-1, keepdims=True)
  e = np.exp(z)
  return e / e.sum(-1, keepdims=True)


def _stack_states(states):
  return jax.tree.map(lambda *xs: jnp.concatenate(xs, 0), *states)


def _index_state(state, j):
  return jax.tree.map(lambda x: x[j:j + 1], state)


def _shift(ns: music_pb2.NoteSequence, seconds: float) -> None:
  if seconds:
    for n in ns.notes:
      n.start_time += seconds
      n.end_time += seconds
    ns.total_time += seconds


def _primer_melody(qns, spb: int, start_step: int) -> tuple[list[int], int]:
  """The primer's melody (all of it: infinite gap), padded/cut to ``start_step``."""
  tracks = melody_data.extract_melodies(event_utils.NoteArrays.from_sequence(qns), spb,
                                        math.inf, None, keep_highest=True, pad_end=False)
  if tracks:
    track = min(tracks, key=lambda t: t.start_step)
    events, origin = track.events, track.start_step
  else:   # an empty melody starting one step before the section
    events, origin = np.zeros(0, np.int64), max(0, start_step - 1)
  if start_step - origin <= 0:
    raise GeneratorError("the primer's melody starts at or after the generate section")
  return melody_data.set_melody_length(events, start_step - origin).tolist(), origin


def _primer_drums(qns, spb: int, start_step: int):
  """Primer drum events (type masks), the raw pitch sets and the track's start step."""
  drum = encodings.MultiDrumOneHotEncoding()
  hits = [(n.quantized_start_step, n.pitch) for n in qns.notes if n.is_drum]
  if hits:
    first = min(s for s, _ in hits)
    origin = first - first % spb
  else:
    origin = max(0, start_step - 1)
  length = start_step - origin
  if length <= 0:
    raise GeneratorError("the primer's drums start at or after the generate section")
  sets: list[list[int]] = [[] for _ in range(length)]
  for s, p in hits:
    if 0 <= s - origin < length and p not in sets[s - origin]:
      sets[s - origin].append(p)
  return [drum.event_from_pitches(p) for p in sets], sets, origin


def _drums_to_sequence(sets, origin: int, steps_per_quarter: int, qpm: float):
  ns = music_pb2.NoteSequence(ticks_per_quarter=melody_data.STANDARD_PPQ)
  ns.tempos.add(qpm=qpm)
  step_time = 60.0 / qpm / steps_per_quarter
  for i, pitches in enumerate(sets):
    for p in pitches:
      ns.notes.add(pitch=int(p), velocity=100, start_time=(origin + i) * step_time,
                   end_time=(origin + i + 1) * step_time, is_drum=True, instrument=9)
  ns.total_time = (origin + len(sets)) * step_time
  return ns


def parse_primer_list(text: str) -> list[int]:
  """``"[60, -2, 60, -2, 67]"`` (Magenta's --primer_melody / --primer_drums melody form)."""
  try:
    value = ast.literal_eval(text)
  except (ValueError, SyntaxError) as e:
    raise GeneratorError(f"cannot parse primer {text!r}: {e}") from e
  if not isinstance(value, (list, tuple)):
    raise GeneratorError(f"primer must be a list, got {text!r}")
  return list(value)


def primer_list_to_sequence(values: Sequence, kind: str, qpm: float = 120.0,
                            steps_per_quarter: int = 4) -> music_pb2.NoteSequence:
  """A primer list as a NoteSequence: melody events ``[60, -2, -1]`` or drum pitch
  tuples ``[(36, 42), (), (42,)]`` (Magenta's primer_melody / primer_drums)."""
  if kind == "drums":
    sets = [list(v) if isinstance(v, (list, tuple)) else [v] for v in values]
    return _drums_to_sequence(sets, 0, steps_per_quarter, qpm)
  events = [int(v) for v in values]
  for e in events:
    if not -2 <= e <= 127:
      raise GeneratorError(f"melody primer event {e} outside [-2, 127]")
  return melody_data.melody_to_sequence(events, steps_per_quarter, velocity=100, qpm=qpm)
