r"""Multi-instrument corpus from music21's bundled multi-part scores (Bach chorales).

Every MusicXML score of the chosen collections (default ``bach``: the chorales, four
voices each) goes through ``flax_musicvae.pipelines.folk_melodies``'s music21 -> NoteSequence
conversion and its per-file cache (one instrument per part, 120 qpm, pickups shifted to
bar lines); each part then gets its own MIDI program from ``PART_PROGRAMS`` (a string
quartet by default: violin, viola, cello, contrabass), so the parts are distinct
instruments for ``MultiInstrumentPerformanceConverter``. The collection is one
NoteSequence TFRecord; ``data.eval_fraction`` of the ids (``note_sequence_dataset``'s
hash split) is held out. The report counts scores, the train / validation split and the
1-bar ``hier-multiperf_vel_1bar`` examples of each split.

Example:
  python -m pipelines.multipart_scores --cache_dir=/tmp/m21_cache \
    --output_file=/tmp/chorales.tfrecord --report=bench/results/multipart_scores.json
"""

from __future__ import annotations

import argparse
import collections
import pathlib
import sys
import time
from typing import Iterator, Sequence

import tqdm
from note_seq.protobuf import music_pb2

from flax_musicvae import pipelines
from flax_musicvae.data.converter import Mode
from flax_musicvae.data.multiperf import MultiInstrumentPerformanceConverter
from flax_musicvae.pipelines import folk_melodies, note_sequence_dataset, note_sequence_io

DEFAULT_COLLECTIONS = ("bach",)
#: Program of part k (cycled past the end): violin, viola, cello, contrabass.
PART_PROGRAMS = (40, 41, 42, 43)
SCORE_SUFFIXES = (".mxl", ".xml", ".musicxml")
#: The converter of the four hier-multiperf_vel_1bar configs (chords off).
CONVERTER = MultiInstrumentPerformanceConverter(
    num_velocity_bins=8, hop_size_bars=1, max_num_instruments=8, max_events_per_instrument=64)


def score_files(collections_: Sequence[str]) -> list[pathlib.Path]:
  """The MusicXML files of the named corpus collections, sorted."""
  return [p for p in folk_melodies.corpus_files(collections_) if p.suffix in SCORE_SUFFIXES]


def assign_programs(ns: music_pb2.NoteSequence,
                    programs: Sequence[int] = PART_PROGRAMS) -> music_pb2.NoteSequence:
  """A copy of ``ns`` whose part ``k`` (instrument ``k``) plays ``programs[k % len]``."""
  out = music_pb2.NoteSequence()
  out.CopyFrom(ns)
  info = music_pb2.NoteSequence.SourceInfo
  out.source_info.encoding_type = info.MUSIC_XML
  for note in out.notes:
    note.program = programs[note.instrument % len(programs)]
  return out


def iter_scores(collections_: Sequence[str], cache_dir: pathlib.Path | None,
                skips: collections.Counter, limit_files: int | None = None,
                progress: bool = True) -> Iterator[music_pb2.NoteSequence]:
  """Multi-part NoteSequences (single-part ones counted as ``single_part``)."""
  files = score_files(collections_)[:limit_files]
  for path in tqdm.tqdm(files, desc="scores", unit="file", disable=not progress):
    collection = next(n for n in collections_ if n in path.parts[:-1] or path.stem == n)
    sequences, file_skips = folk_melodies.cached_convert_file(path, collection, cache_dir)
    skips.update(file_skips)
    for ns in sequences:
      if len({n.instrument for n in ns.notes}) < 2:
        skips["single_part"] += 1
        continue
      yield assign_programs(ns)


def count_examples(sequences: Sequence[music_pb2.NoteSequence], eval_fraction: float
                   ) -> dict:
  """Per split: sequences and the 1-bar multiperf examples they give (eval mode)."""
  counts = {s: collections.Counter() for s in ("train", "validation")}
  for ns in sequences:
    split = note_sequence_dataset.split_of(ns.id, eval_fraction)
    counts[split]["sequences"] += 1
    counts[split]["multiperf_examples"] += len(CONVERTER.to_tensors(ns, Mode.EVAL))
  return {s: dict(c) for s, c in counts.items()}


def main(argv: Sequence[str] | None = None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  folk_melodies.add_corpus_flags(parser, DEFAULT_COLLECTIONS, "score")
  parser.add_argument("--output_file", type=pathlib.Path, required=True,
                      help="write the NoteSequences to this TFRecord file")
  parser.add_argument("--eval_fraction", type=float, default=0.1,
                      help="share of sequence ids held out (as data.eval_fraction)")
  args = parser.parse_args(argv)

  skips = collections.Counter()
  start = time.perf_counter()
  with pipelines.user_errors(parser):
    if not 0.0 < args.eval_fraction < 1.0:
      raise ValueError(f"--eval_fraction must be in (0, 1), got {args.eval_fraction}")
    sequences = list(iter_scores(args.collections, args.cache_dir, skips, args.limit_files,
                                 progress=not args.no_progress))
    note_sequence_io.write_note_sequences(args.output_file, sequences)
  report = {
      "command": " ".join(["python -m pipelines.multipart_scores",
                           *(sys.argv[1:] if argv is None else argv)]),
      "collections": args.collections,
      "scores": len(sequences),
      "skipped": dict(skips),
      "convert_seconds": round(time.perf_counter() - start, 1),
      "eval_fraction": args.eval_fraction,
      "splits": count_examples(sequences, args.eval_fraction),
  }
  return folk_melodies.print_report(report, args.report)


if __name__ == "__main__":
  main()
