"""Output a user looks at: labelled piano rolls and drum plots, chord tracks in MIDI."""

import note_seq
import numpy as np
import pretty_midi
from note_seq import chord_symbols_lib

from conftest import FIXTURES
from flax_musicvae import config_lib
from flax_musicvae import inference
from flax_musicvae import render
from flax_musicvae.data import chords

ROCK = next((FIXTURES / "groove").rglob("2_rock_100_beat_4-4.mid"))
CHORDS = ["C", "G", "Am", "F"]


def _labels(ax, axis: str = "y") -> list[str]:
  return [t.get_text() for t in getattr(ax, f"get_{axis}ticklabels")()]


def _chord_melody():
  """A 2-bar melody as cat_mel_2bar_med_chords decodes it, with chord controls C G Am F."""
  conv = config_lib.make_converter(config_lib.load("cat_mel_2bar_med_chords").data)
  classes = np.random.default_rng(0).integers(2, conv.output_depth, 32)  # note-ons only
  sample = np.eye(conv.output_depth, dtype=np.float32)[classes]
  per_step = np.repeat([chords.triad_class(c) for c in CHORDS], 8)
  controls = np.eye(chords.NUM_TRIAD_CLASSES, dtype=np.float32)[per_step]
  return conv.from_tensors([sample], [controls])[0]


def test_note_names():
  assert [render.note_name(p) for p in (21, 60, 66, 127)] == ["A0", "C4", "F#4", "G9"]


def test_piano_roll_has_note_names_and_chord_symbols():
  ns = _chord_melody()
  assert render.chord_symbols(ns) == [(i * 1.0, c) for i, c in enumerate(CHORDS)]
  ax = render.figure([ns]).axes[0]
  pitches = [n.pitch for n in ns.notes]
  ticks = ax.get_yticks()
  # Labels are real pitch names at their pitches, naturals only for a 2-octave range.
  assert len(ticks) >= 3 and _labels(ax) == [render.note_name(int(p)) for p in ticks]
  assert all("#" not in label for label in _labels(ax)) == (max(pitches) - min(pitches) >= 12)
  assert min(pitches) - 0.5 <= ticks.min() and ticks.max() <= max(pitches) + 0.5
  # Chord symbols above the roll, at their 16th step (120 qpm: 8 steps a second).
  texts = sorted((t.get_position()[0], t.get_text()) for t in ax.texts)
  assert [t for _, t in texts] == CHORDS
  np.testing.assert_allclose([x for x, _ in texts], np.arange(4) * 8 - 0.3)


def test_drum_plot_shows_rows_velocity_and_micro_timing():
  played = note_seq.extract_subsequence(inference.read_midi(ROCK), 0.0, 4.8)  # 2 bars
  step = 15.0 / played.tempos[0].qpm
  quantized = note_seq.NoteSequence()
  quantized.CopyFrom(played)
  for note in quantized.notes:
    note.start_time = round(note.start_time / step) * step
    note.velocity = 80
  fig = render.figure([quantized, played], ["quantized", "played"])
  (flat, groove) = fig.axes
  assert _labels(flat) == _labels(groove) == list(render.DRUM_ROWS)
  assert _labels(flat)[:3] == ["kick", "snare", "closed hh"]
  for ax, ns in ((flat, quantized), (groove, played)):
    (dots,) = ax.collections
    xy = dots.get_offsets()
    assert len(xy) == len(ns.notes)
    np.testing.assert_allclose(np.sort(xy[:, 0]), np.sort([n.start_time / step
                                                             for n in ns.notes]))
  # Micro-timing: quantized hits sit on their 16th lines, played ones off them.
  def off_grid(ax):
    return np.abs(np.asarray(ax.collections[0].get_offsets())[:, 0] % 1 - 0.5)
  assert off_grid(flat).min() > 0.499 and np.median(off_grid(groove)) < 0.45
  # Velocity: marker area grows with it; flat velocities give one size.
  sizes = groove.collections[0].get_sizes()
  order = np.argsort([n.velocity for n in played.notes], kind="stable")
  assert np.all(np.diff(sizes[order]) >= 0)
  assert len(np.unique(flat.collections[0].get_sizes())) == 1 < len(np.unique(sizes))


def test_chord_symbols_survive_a_midi_round_trip(tmp_path):
  ns = _chord_melody()
  path = render.write_midi(ns, tmp_path / "chords.mid")
  assert render.read_chord_symbols(path) == render.chord_symbols(ns)
  back = note_seq.midi_file_to_note_sequence(str(path))
  assert [(n.pitch, n.start_time) for n in back.notes] == [
      (n.pitch, n.start_time) for n in ns.notes]
  # With a voicing: a program-88 track whose notes are each chord's pitch classes.
  voiced = render.write_midi(ns, tmp_path / "voiced.mid", chord_voicing=True)
  assert render.read_chord_symbols(voiced) == render.chord_symbols(ns)
  (pad,) = [i for i in pretty_midi.PrettyMIDI(str(voiced)).instruments if i.program == 88]
  for k, chord in enumerate(CHORDS):
    sounding = {n.pitch % 12 for n in pad.notes if abs(n.start - k) < 1e-6}
    assert sounding == {p % 12 for p in chord_symbols_lib.chord_symbol_pitches(chord)}
