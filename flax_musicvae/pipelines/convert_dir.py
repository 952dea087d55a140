r"""Converts a directory of MIDI / MusicXML files into a NoteSequence collection.

The counterpart of Magenta's ``convert_dir_to_note_sequences`` without TensorFlow:
files are converted in parallel worker processes and written, in directory-walk
order, to a TFRecord file of serialized NoteSequences
(``flax_musicvae.pipelines.note_sequence_io``).
As in Magenta, each NoteSequence gets ``collection_name`` = the input directory's
base name, ``filename`` = the path relative to the input directory and
``id`` = ``/id/<midi|musicxml>/<collection_name>/<sha1(filename)>``.

A bad file never stops the run: it is skipped and counted by reason (see
``SkipReason``). Files that convert but that some representations will turn into
zero examples (no notes, no drum notes, not 4/4, tempo changes) are kept, as
Magenta keeps them, and listed under ``Observation`` in the report.

Example:
  python -m pipelines.convert_dir --input_dir=/data/groove \
    --output_file=/tmp/groove.tfrecord --num_workers=2
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import dataclasses
import enum
import hashlib
import json
import logging
import multiprocessing
import os
import time
import warnings
from typing import Iterator, Sequence

import tqdm
from note_seq import midi_io, musicxml_reader
from note_seq.protobuf import music_pb2

from flax_musicvae import pipelines
from flax_musicvae.pipelines import note_sequence_io

MIDI_EXTENSIONS = (".mid", ".midi")
MUSICXML_EXTENSIONS = (".xml", ".mxl", ".musicxml")
_MAX_MESSAGE_CHARS = 300


class SkipReason(str, enum.Enum):
  """Why a file with a supported extension produced no NoteSequence."""
  EMPTY = "empty"  # zero-length file
  UNREADABLE = "unreadable"  # OS error while listing or reading (permissions, broken link)
  TRUNCATED = "truncated"  # MIDI data ends early (the parser hit end of file)
  CORRUPT = "corrupt"  # not a parseable MIDI / MusicXML file
  CONVERSION_ERROR = "conversion_error"  # parsed, but note_seq failed to convert it


class Observation(str, enum.Enum):
  """Properties of converted files that make some representations yield no examples."""
  NO_NOTES = "no_notes"
  NO_DRUM_NOTES = "no_drum_notes"  # has notes, none is_drum: drum/groove converters skip it
  NOT_4_4 = "time_signature_not_4_4"  # GrooVAE keeps only 4/4
  TEMPO_CHANGES = "tempo_changes"  # converters presplit the sequence at each change


@dataclasses.dataclass(frozen=True)
class FileResult:
  """Outcome of converting one file (``record`` is None when it was skipped)."""
  filename: str
  record: bytes | None = None
  reason: SkipReason | None = None
  message: str = ""
  observations: tuple[Observation, ...] = ()


@dataclasses.dataclass
class ConversionReport:
  """What happened to every file under the input directory."""
  input_dir: str
  converted: list[str] = dataclasses.field(default_factory=list)
  skipped: dict[SkipReason, list[tuple[str, str]]] = dataclasses.field(
      default_factory=lambda: collections.defaultdict(list))
  observations: dict[Observation, list[str]] = dataclasses.field(
      default_factory=lambda: collections.defaultdict(list))
  ignored: list[str] = dataclasses.field(default_factory=list)
  seconds: float = 0.0

  @property
  def num_skipped(self) -> int:
    return sum(len(files) for files in self.skipped.values())

  @property
  def skip_counts(self) -> dict[str, int]:
    return {reason.value: len(files) for reason, files in self.skipped.items()}

  def add(self, result: FileResult) -> None:
    if result.record is None:
      self.skipped[result.reason].append((result.filename, result.message))
      return
    self.converted.append(result.filename)
    for observation in result.observations:
      self.observations[observation].append(result.filename)

  def to_dict(self) -> dict:
    return {
        "input_dir": self.input_dir,
        "num_converted": len(self.converted),
        "num_skipped": self.num_skipped,
        "skip_counts": self.skip_counts,
        "skipped": {r.value: [list(f) for f in files] for r, files in self.skipped.items()},
        "observations": {o.value: files for o, files in self.observations.items()},
        "ignored": self.ignored,
        "seconds": self.seconds,
    }

  def summary(self, max_listed: int = 20) -> str:
    """Human-readable summary: counts, then every skip (up to ``max_listed`` per reason)."""
    rate = len(self.converted) / self.seconds if self.seconds else float("nan")
    lines = [f"{self.input_dir}: converted {len(self.converted)} files, skipped "
             f"{self.num_skipped}, ignored {len(self.ignored)} without a MIDI/MusicXML "
             f"extension ({self.seconds:.1f} s, {rate:.1f} files/s)"]
    for reason, files in sorted(self.skipped.items()):
      lines.append(f"  skipped ({reason.value}): {len(files)}")
      lines += [f"    {name}: {message}" for name, message in files[:max_listed]]
      if len(files) > max_listed:
        lines.append(f"    ... and {len(files) - max_listed} more")
    for observation, files in sorted(self.observations.items()):
      lines.append(f"  converted, but {observation.value}: {len(files)} (some "
                   "representations yield no examples from these)")
    return "\n".join(lines)


def generate_note_sequence_id(filename: str, collection_name: str, source_type: str) -> str:
  """Magenta's id: ``/id/<source type>/<collection>/<sha1 of the relative filename>``."""
  digest = hashlib.sha1(filename.encode("utf-8")).hexdigest()
  return f"/id/{source_type.lower()}/{collection_name}/{digest}"


def _source_type(filename: str) -> str | None:
  lower = filename.lower()
  if lower.endswith(MIDI_EXTENSIONS):
    return "midi"
  if lower.endswith(MUSICXML_EXTENSIONS):
    return "musicxml"
  return None


def find_music_files(input_dir: str, recursive: bool = True
                     ) -> tuple[list[str], list[str], list[tuple[str, str]]]:
  """Walks ``input_dir`` (files of a directory before its sub-directories, sorted).

  Returns:
    (music files, other files, unreadable directories with the error), paths
    relative to ``input_dir``.
  """
  music, other, errors = [], [], []

  def on_error(error: OSError) -> None:
    errors.append((os.path.relpath(error.filename, input_dir), str(error)))

  for dirpath, dirnames, filenames in os.walk(input_dir, onerror=on_error):
    dirnames[:] = sorted(dirnames) if recursive else []
    for name in sorted(filenames):
      rel = os.path.relpath(os.path.join(dirpath, name), input_dir)
      (music if _source_type(name) else other).append(rel)
  return music, other, errors


def _observations(sequence: music_pb2.NoteSequence) -> tuple[Observation, ...]:
  found = []
  if not sequence.notes:
    found.append(Observation.NO_NOTES)
  elif not any(note.is_drum for note in sequence.notes):
    found.append(Observation.NO_DRUM_NOTES)
  if any((ts.numerator, ts.denominator) != (4, 4) for ts in sequence.time_signatures):
    found.append(Observation.NOT_4_4)
  if len({tempo.qpm for tempo in sequence.tempos}) > 1:
    found.append(Observation.TEMPO_CHANGES)
  return tuple(found)


class _EmptyFileError(Exception):
  pass


def _parse(path: str, source_type: str) -> music_pb2.NoteSequence:
  """Reads and parses one file; raises on any problem (classified by the caller)."""
  with open(path, "rb") as f:
    data = f.read()
  if not data:
    raise _EmptyFileError()
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # pretty_midi warns about meta events on non-zero tracks
    if source_type == "midi":
      return midi_io.midi_to_note_sequence(data)
    return musicxml_reader.musicxml_file_to_sequence_proto(path)


def _skip_reason(error: Exception) -> SkipReason:
  if isinstance(error, _EmptyFileError):
    return SkipReason.EMPTY
  if isinstance(error, OSError):
    return SkipReason.UNREADABLE
  if isinstance(error, midi_io.MIDIConversionError):
    # note_seq re-raises the parser's exception inside its except block.
    truncated = isinstance(error.__context__, EOFError)
    return SkipReason.TRUNCATED if truncated else SkipReason.CORRUPT
  if isinstance(error, musicxml_reader.MusicXMLConversionError):
    return SkipReason.CORRUPT
  return SkipReason.CONVERSION_ERROR


def convert_file(input_dir: str, filename: str) -> FileResult:
  """Converts ``input_dir/filename``; never raises for a bad file."""
  source_type = _source_type(filename)
  try:
    sequence = _parse(os.path.join(input_dir, filename), source_type)
  except Exception as e:  # pylint: disable=broad-except
    message = f"{type(e).__name__}: {e}"[:_MAX_MESSAGE_CHARS]
    return FileResult(filename, reason=_skip_reason(e), message=message)
  sequence.collection_name = os.path.basename(input_dir)
  sequence.filename = filename
  sequence.id = generate_note_sequence_id(filename, sequence.collection_name, source_type)
  return FileResult(filename, record=sequence.SerializeToString(),
                    observations=_observations(sequence))


def _convert_task(task: tuple[str, str]) -> FileResult:
  return convert_file(*task)


def _convert_all(input_dir: str, filenames: Sequence[str], num_workers: int
                 ) -> Iterator[FileResult]:
  """Converts files in order, in ``num_workers`` processes (in this one when 1)."""
  tasks = [(input_dir, name) for name in filenames]
  if num_workers <= 1:
    yield from map(_convert_task, tasks)
    return
  chunksize = max(1, min(16, len(tasks) // (8 * num_workers)))
  # "spawn": a forked copy of a parent running JAX/TF threads can deadlock.
  with multiprocessing.get_context("spawn").Pool(num_workers) as pool:
    yield from pool.imap(_convert_task, tasks, chunksize=chunksize)


def convert_directory(input_dir: str | os.PathLike, output_file: str | os.PathLike | None = None,
                      recursive: bool = True, num_workers: int | None = None, *,
                      progress: bool = True
                      ) -> tuple[list[music_pb2.NoteSequence] | int, ConversionReport]:
  """Converts every MIDI/MusicXML file under ``input_dir``.

  Args:
    input_dir: directory to convert; its base name becomes ``collection_name``.
    output_file: TFRecord file to (over)write; None returns the NoteSequences.
    recursive: also convert sub-directories (Magenta's flag defaults to False).
    num_workers: worker processes (default: CPU count; 1 converts in-process).
    progress: show a tqdm progress bar.

  Returns:
    (the NoteSequences, or the number written to ``output_file``; the report).
  """
  input_dir = os.path.normpath(os.fspath(input_dir))
  if num_workers is not None and num_workers < 1:
    raise ValueError(f"num_workers must be >= 1, got {num_workers}")
  if not os.path.isdir(input_dir):
    raise NotADirectoryError(f"--input_dir {input_dir!r} is not a directory")
  start = time.perf_counter()
  filenames, ignored, dir_errors = find_music_files(input_dir, recursive)
  report = ConversionReport(input_dir, ignored=ignored)
  for name, message in dir_errors:
    report.add(FileResult(name, reason=SkipReason.UNREADABLE, message=message))
  workers = min(num_workers or os.cpu_count() or 1, max(1, len(filenames)))
  sequences = []
  with contextlib.ExitStack() as stack:
    writer = None
    if output_file is not None:
      os.makedirs(os.path.dirname(os.path.abspath(output_file)), exist_ok=True)
      writer = stack.enter_context(note_sequence_io.TFRecordWriter(output_file))
    bar = stack.enter_context(tqdm.tqdm(total=len(filenames), unit="file",
                                        disable=not progress, desc="converting"))
    for result in _convert_all(input_dir, filenames, workers):
      report.add(result)
      if result.record is None:
        logging.warning("Skipped %s (%s): %s", result.filename, result.reason.value,
                        result.message)
      elif writer is not None:
        writer.write(result.record)
      else:
        sequences.append(music_pb2.NoteSequence.FromString(result.record))
      bar.update()
  report.seconds = time.perf_counter() - start
  logging.info("%s", report.summary())
  return (len(report.converted) if writer is not None else sequences), report


def _parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog="python -m pipelines.convert_dir",
      description="Convert a directory of MIDI (.mid/.midi) and MusicXML "
      "(.xml/.mxl/.musicxml) files into a TFRecord file of NoteSequence protos, the "
      "input format of Magenta's music_vae_train --examples_path (and of this "
      "project's data pipeline). Bad files are skipped and counted by reason.",
      epilog="Skip reasons: " + ", ".join(r.value for r in SkipReason) + ". Files that "
      "convert but may yield no training examples for some representations are kept "
      "and reported as: " + ", ".join(o.value for o in Observation) + ".",
      formatter_class=argparse.ArgumentDefaultsHelpFormatter)
  parser.add_argument("--input_dir", required=True,
                      help="directory to convert; its base name is the collection name")
  parser.add_argument("--output_file", required=True,
                      help="TFRecord file to write (overwritten if it exists)")
  parser.add_argument("--recursive", action=argparse.BooleanOptionalAction, default=True,
                      help="also convert sub-directories")
  parser.add_argument("--num_workers", type=int, default=os.cpu_count(),
                      help="worker processes (1: convert in this process)")
  parser.add_argument("--report_json", default=None,
                      help="also write the full report (every skip with its reason) here")
  parser.add_argument("--no_progress", action="store_true", help="hide the progress bar")
  return parser


def main(argv: Sequence[str] | None = None) -> None:
  parser = _parser()
  args = parser.parse_args(argv)
  logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
  with pipelines.user_errors(parser):
    _, report = convert_directory(args.input_dir, args.output_file, args.recursive,
                                  args.num_workers, progress=not args.no_progress)
    print(report.summary())
    if args.report_json:
      with open(args.report_json, "w") as f:
        json.dump(report.to_dict(), f, indent=1)


if __name__ == "__main__":
  main()
