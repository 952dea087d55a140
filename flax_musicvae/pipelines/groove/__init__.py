r"""The Groove MIDI Dataset as cached GrooVAE training arrays, offline.

Windowing is that of tensorflow-datasets' ``groove/{2,4}bar-midionly`` (which Magenta
trains on): per file, bar length ``60 / bpm * numerator`` from info.csv,
``total_bars = round(pretty_midi end time / bar)``, windows of ``split_bars`` bars with
a 1-bar hop, each cut with pretty_midi's ``adjust_times`` and written back to MIDI;
Magenta then reads each window with ``note_seq.midi_to_note_sequence`` and converts it
with its ``GrooveConverter``. Windows that give no example are dropped and counted by
reason.

Two paths compute the same arrays:

* ``reference_file_examples``: that chain itself (pretty_midi, note_seq); slow
  (0.1-0.3 s per window: tfds deep-copies the whole file for every window);
* ``fast_file_examples``: ``midi_fast.read_midi`` plus a numpy re-enactment of
  ``adjust_times``, the MIDI write (tick rounding, tempo rescaling) and re-read, for
  files with one tempo and one instrument (all of the dataset); other files, and
  files it cannot decode, go through the reference path. Tests check both give
  identical arrays.

``load_groove_split`` caches one split as an ``.npz`` keyed by the converter settings,
mode, seed and a hash of info.csv and the split's files, so training never re-parses
MIDI. Unreadable or missing files are skipped and counted with their reason; ``stats``
lists each file that gives no example (``skipped``: file, reason).

One module a job: ``sources`` (folder or zip, info.csv), ``examples`` (a file's windows
and drop reasons), ``reference`` and ``fast`` (the two paths), ``build`` (one split),
``cache`` (``load_groove_split``), ``cli``; their public names are re-exported here.

Example:
  python -m pipelines.groove --root=/data/groove-v1.0.0-midionly \
    --cache_dir=/tmp/groove_cache --split_bars=4
"""

from flax_musicvae.pipelines.groove.build import build_split
from flax_musicvae.pipelines.groove.cache import CACHE_VERSION, load_groove_split
from flax_musicvae.pipelines.groove.cli import main
from flax_musicvae.pipelines.groove.examples import NO_NOTES, NOT_4_4, TOO_SHORT, FileExamples
from flax_musicvae.pipelines.groove.fast import fast_file_examples
from flax_musicvae.pipelines.groove.reference import reference_file_examples, tfds_window_midis
from flax_musicvae.pipelines.groove.sources import METADATA_FIELDS, SPLITS, read_split_index

__all__ = [
    "CACHE_VERSION", "FileExamples", "METADATA_FIELDS", "NOT_4_4", "NO_NOTES", "SPLITS",
    "TOO_SHORT", "build_split", "fast_file_examples", "load_groove_split", "main",
    "read_split_index", "reference_file_examples", "tfds_window_midis",
]
