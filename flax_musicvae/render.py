"""Output files: MIDI, piano-roll / drum-grid PNGs and WAVs.

PNGs use matplotlib's Agg canvas directly (no pyplot, no display). WAVs come from the
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

import numpy as np

#: Drum-grid rows: GM pitch -> row label, in the 9 GrooVAE classes' order.
DRUM_ROWS = ("kick", "snare", "closed hh", "open hh", "low tom", "mid tom", "high tom",
             "crash", "ride")
SOUNDFONT_CANDIDATES = (
    "/usr/share/sounds/sf2/FluidR3_GM.sf2",
    "/usr/share/soundfonts/FluidR3_GM.sf2",
    "/usr/share/sounds/sf2/default-GM.sf2",
    "/usr/share/soundfonts/default.sf2",
)


def write_midi(ns, path: str | os.PathLike) -> pathlib.Path:
  """Writes ``ns`` (its tempo included) as a Standard MIDI file."""
  from note_seq import midi_io  # pylint: disable=g-import-not-at-top
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  midi_io.note_sequence_to_midi_file(ns, str(path))
  return path


def _step_seconds(ns, steps_per_quarter: int) -> float:
  qpm = ns.tempos[0].qpm if ns.tempos else 120.0
  return 60.0 / qpm / steps_per_quarter


def drum_grid(ns, steps_per_quarter: int = 4) -> np.ndarray:
  """``[9, steps]`` max velocity / 127 per drum class and 16th step (GM drum classes)."""
  from note_seq import drums_encoder_decoder  # pylint: disable=g-import-not-at-top
  lookup = {p: i for i, pitches in enumerate(drums_encoder_decoder.DEFAULT_DRUM_TYPE_PITCHES)
            for p in pitches}
  step = _step_seconds(ns, steps_per_quarter)
  total = max((n.start_time for n in ns.notes), default=0.0)
  bars = int(np.floor(total / step / 16)) + 1
  grid = np.zeros((len(DRUM_ROWS), 16 * bars))
  for n in ns.notes:
    if n.pitch in lookup:
      col = min(int(np.round(n.start_time / step)), grid.shape[1] - 1)
      grid[lookup[n.pitch], col] = max(grid[lookup[n.pitch], col], n.velocity / 127)
  return grid


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


def save_png(sequences: Sequence, path: str | os.PathLike,
             titles: Sequence[str] | None = None) -> pathlib.Path:
  """One row per sequence: a drum grid for drum tracks, else a piano roll."""
  from matplotlib.backends.backend_agg import FigureCanvasAgg  # pylint: disable=g-import-not-at-top
  from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  rows = len(sequences)
  fig = Figure(figsize=(10, 1.6 * rows + 0.4))
  FigureCanvasAgg(fig)
  for i, ns in enumerate(sequences):
    ax = fig.add_subplot(rows, 1, i + 1)
    if _is_drums(ns):
      grid = drum_grid(ns)
      ax.imshow(_shade(grid), aspect="auto", origin="lower", cmap="Greys", vmin=0, vmax=1,
                interpolation="nearest")
      ax.set_yticks(range(len(DRUM_ROWS)), DRUM_ROWS, fontsize=6)
    else:
      roll, low = piano_roll(ns)
      ax.imshow(_shade(roll), aspect="auto", origin="lower", cmap="Blues", vmin=0, vmax=1,
                interpolation="nearest", extent=(0, roll.shape[1], low - 0.5,
                                                 low + roll.shape[0] - 0.5))
    for bar in range(0, int(ax.get_xlim()[1]) + 1, 16):
      ax.axvline(bar - 0.5, color="tab:red", linewidth=0.5)
    ax.tick_params(axis="x", labelsize=6)
    if titles:
      ax.set_title(titles[i], fontsize=8, loc="left")
  fig.subplots_adjust(left=0.08, right=0.99, bottom=0.3 / rows, top=1 - 0.25 / rows,
                      hspace=0.6)
  fig.savefig(path, dpi=100)
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
  import note_seq  # pylint: disable=g-import-not-at-top
  from flax_musicvae import synth  # pylint: disable=g-import-not-at-top
  ns = note_seq.midi_file_to_note_sequence(str(midi_path))
  return synth.write_wav(ns, wav_path, min(sample_rate, synth.SAMPLE_RATE)), "built-in synth"
