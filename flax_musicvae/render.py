"""Output files: MIDI, piano-roll / drum-groove PNGs and WAVs.

MIDI files carry a sequence's chord symbols (``CHORD_SYMBOL`` text annotations, Magenta's
convention) as MIDI text events, and optionally a chord voicing instrument. PNGs use
matplotlib's Agg canvas directly (no pyplot, no display): piano rolls with note names and
chord symbols, drum plots with one labelled row per drum class where every hit sits at its
played time (micro-timing shows as the distance from its 16th-note line) with its
velocity as marker size and shade. WAVs come from the
``fluidsynth`` program with a General MIDI soundfont (``$FLAX_MUSICVAE_SOUNDFONT`` or a
usual system location) when both are installed, else from the built-in numpy synthesizer
(:mod:`flax_musicvae.synth`).
"""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
from typing import Sequence

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
import note_seq
from note_seq import chord_symbols_lib
from note_seq.protobuf import music_pb2
import numpy as np
import pretty_midi

from flax_musicvae import synth
from flax_musicvae.data import drums
from flax_musicvae.data import groove

#: Drum-plot row labels of the 9 drum classes (``data.drums.REDUCED_DRUM_PITCH_CLASSES``,
#: Magenta's GM mapping, and the Roland pitches of the Groove MIDI Dataset).
DRUM_ROWS = ("kick", "snare", "closed hh", "open hh", "low tom", "mid tom", "high tom",
             "crash", "ride")
NOTE_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
#: Chord voicing (Magenta's improv_rnn_generate --render_chords): velocity, GM program 88.
CHORD_VELOCITY = 50
SOUNDFONT_CANDIDATES = (
    "/usr/share/sounds/sf2/FluidR3_GM.sf2",
    "/usr/share/soundfonts/FluidR3_GM.sf2",
    "/usr/share/sounds/sf2/default-GM.sf2",
    "/usr/share/soundfonts/default.sf2",
)


def note_name(pitch: int) -> str:
  """MIDI pitch -> scientific pitch name: 60 -> ``C4``, 66 -> ``F#4``."""
  return f"{NOTE_NAMES[pitch % 12]}{pitch // 12 - 1}"


def chord_symbols(ns) -> list[tuple[float, str]]:
  """``(time, figure)`` of the ``CHORD_SYMBOL`` text annotations, in time order."""
  chord = music_pb2.NoteSequence.TextAnnotation.CHORD_SYMBOL
  return sorted((a.time, a.text) for a in ns.text_annotations if a.annotation_type == chord)


def write_midi(ns, path: str | os.PathLike, chord_voicing: bool = False) -> pathlib.Path:
  """Writes ``ns`` (its tempo included) as a Standard MIDI file.

  Chord symbols become MIDI text events (note_seq alone drops them); ``chord_voicing``
  also plays them on their own instrument (note_seq's ``BasicChordRenderer``: program
  88, velocity 50, as Magenta's ``--render_chords``).
  """
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  chords = chord_symbols(ns)
  if chord_voicing and chords:
    voiced = type(ns)()
    voiced.CopyFrom(ns)
    voiced.total_time = max(ns.total_time, chords[-1][0])
    note_seq.BasicChordRenderer(velocity=CHORD_VELOCITY).render(voiced)
    ns = voiced
  pm = note_seq.midi_io.note_sequence_to_pretty_midi(ns)
  pm.text_events.extend(pretty_midi.Text(text, time) for time, text in chords)
  pm.write(str(path))
  return path


def read_chord_symbols(path: str | os.PathLike) -> list[tuple[float, str]]:
  """``(time, figure)`` of a MIDI file's text events that are chord symbols."""
  out = []
  for event in pretty_midi.PrettyMIDI(str(path)).text_events:
    try:
      if event.text != "N.C.":
        chord_symbols_lib.chord_symbol_pitches(event.text)
    except chord_symbols_lib.ChordSymbolError:
      continue
    out.append((float(event.time), event.text))
  return sorted(out)


def _step_seconds(ns, steps_per_quarter: int) -> float:
  qpm = ns.tempos[0].qpm if ns.tempos else 120.0
  return 60.0 / qpm / steps_per_quarter


def _drum_lookup() -> dict[int, int]:
  """Drum pitch -> class row: Magenta's GM classes, then the Groove (Roland) pitches."""
  lookup = {}
  for classes in (groove.ROLAND_DRUM_PITCH_CLASSES, drums.REDUCED_DRUM_PITCH_CLASSES):
    lookup.update({p: i for i, pitches in enumerate(classes) for p in pitches})
  return lookup


def drum_grid(ns, steps_per_quarter: int = 4) -> np.ndarray:
  """``[9, steps]`` max velocity / 127 per drum class and 16th step (GM drum classes)."""
  lookup = _drum_lookup()
  step = _step_seconds(ns, steps_per_quarter)
  total = max((n.start_time for n in ns.notes), default=0.0)
  bars = int(np.floor(total / step / 16)) + 1
  grid = np.zeros((len(DRUM_ROWS), 16 * bars))
  for n in ns.notes:
    if n.pitch in lookup:
      col = min(int(np.round(n.start_time / step)), grid.shape[1] - 1)
      grid[lookup[n.pitch], col] = max(grid[lookup[n.pitch], col], n.velocity / 127)
  return grid


def drum_hits(ns, steps_per_quarter: int = 4) -> np.ndarray:
  """``[hits, 3]``: (onset in 16th steps, unrounded; class row; velocity / 127)."""
  lookup = _drum_lookup()
  step = _step_seconds(ns, steps_per_quarter)
  return np.array([(n.start_time / step, lookup[n.pitch], n.velocity / 127)
                   for n in ns.notes if n.pitch in lookup]).reshape(-1, 3)


def piano_roll(ns, steps_per_quarter: int = 4) -> tuple[np.ndarray, int]:
  """``([pitches, steps] velocity / 127, lowest pitch)`` of the non-drum notes."""
  notes = [n for n in ns.notes if not n.is_drum]
  if not notes:
    return np.zeros((1, 16)), 60
  step = _step_seconds(ns, steps_per_quarter)
  low, high = min(n.pitch for n in notes), max(n.pitch for n in notes)
  steps = int(np.ceil(max(n.end_time for n in notes) / step))
  roll = np.zeros((high - low + 1, max(steps, 1)))
  for n in notes:
    a = int(np.round(n.start_time / step))
    b = max(a + 1, int(np.round(n.end_time / step)))
    roll[n.pitch - low, a:b] = n.velocity / 127
  return roll, low


def _shade(values: np.ndarray) -> np.ndarray:
  """Velocity -> grey level, with every note visible however soft."""
  return np.where(values > 0, 0.25 + 0.75 * values, 0.0)


def _is_drums(ns) -> bool:
  return bool(ns.notes) and all(n.is_drum for n in ns.notes)


def _pitch_ticks(low: int, high: int) -> list[int]:
  """Pitches to label: all within an octave, else the naturals (two octaves), C and G, C."""
  span = high - low
  classes = (range(12) if span < 12 else (0, 2, 4, 5, 7, 9, 11) if span < 24
             else (0, 7) if span < 48 else (0,))
  return [p for p in range(low, high + 1) if p % 12 in classes] or [low]


def _plot_drums(ax, ns) -> int:
  """Hits at their played times; marker area and shade from velocity. Returns steps."""
  hits = drum_hits(ns)
  last = int(np.round(hits[:, 0].max())) if len(hits) else 0  # the bar it quantizes into
  steps = 16 * (max(last, 0) // 16 + 1)
  for s in range(steps):  # 16th-note lines: micro-timing is the distance from them
    ax.axvline(s, color="0.75" if s % 4 else "0.55", linewidth=0.3, zorder=0)
  ax.scatter(hits[:, 0], hits[:, 1], s=6 + 40 * hits[:, 2], c=_shade(hits[:, 2]),
             cmap="Greys", vmin=0, vmax=1, marker="o", linewidths=0, zorder=2)
  ax.set_ylim(-0.6, len(DRUM_ROWS) - 0.4)
  ax.set_yticks(range(len(DRUM_ROWS)), DRUM_ROWS, fontsize=6)
  return steps


def _plot_roll(ax, ns) -> int:
  """Notes as velocity-shaded bars; note names on the pitch axis; chord symbols on top."""
  roll, low = piano_roll(ns)
  ax.imshow(_shade(roll), aspect="auto", origin="lower", cmap="Blues", vmin=0, vmax=1,
            interpolation="nearest", extent=(-0.5, roll.shape[1] - 0.5, low - 0.5,
                                             low + roll.shape[0] - 0.5))
  ticks = _pitch_ticks(low, low + roll.shape[0] - 1)
  ax.set_yticks(ticks, [note_name(p) for p in ticks], fontsize=6)
  step = _step_seconds(ns, 4)
  for time, figure in chord_symbols(ns):
    ax.text(time / step - 0.3, 0.97, figure, transform=ax.get_xaxis_transform(), fontsize=6,
            va="top", ha="left", color="tab:purple")
  return roll.shape[1]


def figure(sequences: Sequence, titles: Sequence[str] | None = None):
  """A matplotlib ``Figure``, one row per sequence: a drum plot for drum tracks, else a
  piano roll. Red lines are bar lines; the x axis counts 16th steps."""
  rows = len(sequences)
  fig = Figure(figsize=(10, 1.6 * rows + 0.4))
  FigureCanvasAgg(fig)
  for i, ns in enumerate(sequences):
    ax = fig.add_subplot(rows, 1, i + 1)
    steps = _plot_drums(ax, ns) if _is_drums(ns) else _plot_roll(ax, ns)
    ax.set_xlim(-0.5, steps - 0.5)
    for bar in range(0, steps + 1, 16):
      ax.axvline(bar - 0.5, color="tab:red", linewidth=0.5)
    ax.tick_params(axis="x", labelsize=6)
    if titles:
      ax.set_title(titles[i], fontsize=8, loc="left")
  fig.subplots_adjust(left=0.08, right=0.99, bottom=0.3 / rows, top=1 - 0.25 / rows,
                      hspace=0.6)
  return fig


def save_png(sequences: Sequence, path: str | os.PathLike,
             titles: Sequence[str] | None = None) -> pathlib.Path:
  """:func:`figure` as a PNG."""
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  figure(sequences, titles).savefig(path, dpi=100)
  return path


def find_soundfont() -> str | None:
  env = os.environ.get("FLAX_MUSICVAE_SOUNDFONT")
  if env:
    return env if os.path.isfile(env) else None
  return next((p for p in SOUNDFONT_CANDIDATES if os.path.isfile(p)), None)


def fluidsynth_unavailable_reason() -> str | None:
  """Why FluidSynth cannot render here, or None when it can."""
  if shutil.which("fluidsynth") is None:
    return "the 'fluidsynth' program is not installed (apt install fluidsynth)"
  if find_soundfont() is None:
    return ("no General MIDI soundfont found; set FLAX_MUSICVAE_SOUNDFONT to an .sf2 file "
            "(e.g. apt install fluid-soundfont-gm)")
  return None


def render_wav(midi_path: str | os.PathLike, wav_path: str | os.PathLike,
               sample_rate: int = 44100) -> tuple[pathlib.Path, str]:
  """Renders a MIDI file to WAV: ``(path, engine)``.

  FluidSynth with a General MIDI soundfont when both are installed, else the built-in
  synthesizer (:mod:`flax_musicvae.synth`, numpy only).
  """
  if fluidsynth_unavailable_reason() is None:
    subprocess.run(["fluidsynth", "-ni", "-g", "1.0", "-r", str(sample_rate), "-F",
                    str(wav_path), find_soundfont(), str(midi_path)],
                   check=True, capture_output=True)
    return pathlib.Path(wav_path), "fluidsynth"
  ns = note_seq.midi_file_to_note_sequence(str(midi_path))
  return synth.write_wav(ns, wav_path, min(sample_rate, synth.SAMPLE_RATE)), "built-in synth"
