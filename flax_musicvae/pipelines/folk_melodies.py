r"""Folk-tune melody corpus from music21's bundled ABC collections.

Every tune of the chosen collections (``music21.corpus``: ryansMammoth, oneills1850,
essenFolksong, nottingham-dataset, airdsAirs, miscFolk) is parsed with music21 and
converted directly to a NoteSequence (120 qpm, ties merged, grace notes dropped, a
pickup bar shifted so that bar lines fall on bar boundaries, one instrument per part,
program 0, chord symbols as CHORD_SYMBOL text annotations at the times of the notes they
stand over, as note_seq's lead sheets and the improv pipeline read them). Conversions
are cached per ABC file, so a second run only reads the cache; the collection is written with ``flax_musicvae.pipelines.note_sequence_io``.
Tunes that cannot be used are counted by reason; the report also counts the 2-bar and
16-bar melody windows that the train-mode converters of ``cat-mel_2bar_small`` and
``hierdec-mel_16bar`` extract (before their 5-per-sequence sampling, and after it).

Example:
  python -m pipelines.folk_melodies --cache_dir=/tmp/folk_cache \
    --output_file=/tmp/folk.tfrecord --report=bench/results/folk_melodies.json
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import enum
import hashlib
import json
import logging
import pathlib
import re
import sys
import time
import warnings
from typing import Iterable, Iterator, Sequence

import numpy as np
import tqdm
from note_seq import chord_symbols_lib
from note_seq.protobuf import music_pb2

from flax_musicvae import pipelines
from flax_musicvae.data import chords as chords_lib
from flax_musicvae.data.converter import Mode
from flax_musicvae.data.melody import MEL_PROGRAMS, OneHotMelodyConverter
from flax_musicvae.pipelines import note_sequence_io

DEFAULT_COLLECTIONS = ("ryansMammoth", "oneills1850", "essenFolksong",
                       "nottingham-dataset", "airdsAirs", "miscFolk")
QPM = 120.0
_SECONDS_PER_QUARTER = 60.0 / QPM
_DEFAULT_VELOCITY = 100
_CACHE_VERSION = "v2"   # v2: chord symbols kept
_CHORD_SYMBOL = music_pb2.NoteSequence.TextAnnotation.CHORD_SYMBOL

# Train-mode converter settings of the two melody configs (Magenta configs.py).
CONVERTERS = {
    "cat-mel_2bar_small": OneHotMelodyConverter(
        valid_programs=MEL_PROGRAMS, skip_polyphony=False, max_bars=100, slice_bars=2,
        steps_per_quarter=4),
    "hierdec-mel_16bar": OneHotMelodyConverter(
        skip_polyphony=False, max_bars=100, slice_bars=16, steps_per_quarter=4),
}


class SkipReason(str, enum.Enum):
  """Why an ABC file or tune produced no NoteSequence."""
  PARSE_ERROR = "parse_error"  # music21 could not parse the file
  CONVERSION_ERROR = "conversion_error"  # parsed, but a tune could not be converted
  NO_NOTES = "no_notes"  # a tune without any sounding note
  NOT_IN_CACHE = "not_in_cache"  # --cache_only and the file was not converted yet


def corpus_files(collections_: Sequence[str]) -> list[pathlib.Path]:
  """The ABC files of the named music21 corpus collections, sorted.

  ``FileNotFoundError`` naming ``pip install music21`` when it is not installed (the
  corpus ships inside that package).
  """
  try:
    from music21 import corpus  # pylint: disable=import-outside-toplevel
  except ImportError as e:
    raise FileNotFoundError(
        f"the folk corpus ships inside music21, which is not installed ({e}): "
        "pip install music21 (or pip install -e '.[data]')") from e
  paths = [pathlib.Path(p) for p in corpus.getCorePaths()]
  files = []
  for name in collections_:
    found = sorted(p for p in paths if name in p.parts[:-1] or p.stem == name)
    if not found:
      raise ValueError(f"music21 corpus has no collection named {name!r}")
    files += found
  return files


def _pickup_shift(part) -> float:
  """Quarters missing from an incomplete first bar (an anacrusis), else 0."""
  from music21 import stream  # pylint: disable=import-outside-toplevel
  first = part.getElementsByClass(stream.Measure).first()
  if first is None:
    return 0.0
  if first.paddingLeft:
    return float(first.paddingLeft)
  bar = first.barDuration.quarterLength
  length = first.duration.quarterLength
  return float(bar - length) if first.number == 0 and 0 < length < bar else 0.0


def chord_figure(symbol) -> str | None:
  """note_seq's figure of a music21 ChordSymbol (``N.C.`` for NoChord); None if unreadable.

  ABC writes bass notes in lower case (``Am/c``), note_seq reads upper case only. A
  figure that note_seq cannot parse, or reads with another root than music21 does
  (``B-`` is B flat to music21, B minor to note_seq), gives None.
  """
  from music21 import harmony  # pylint: disable=import-outside-toplevel
  if isinstance(symbol, harmony.NoChord):
    return chords_lib.NO_CHORD
  figure = re.sub(r"/([a-g])", lambda m: "/" + m.group(1).upper(), symbol.figure)
  try:
    root = chord_symbols_lib.chord_symbol_root(figure)
  except chord_symbols_lib.ChordSymbolError:
    return None
  return figure if symbol.root() is not None and symbol.root().pitchClass == root else None


def score_to_note_sequence(score, *, collection: str = "", filename: str = "",
                           index: int = 0) -> music_pb2.NoteSequence:
  """A music21 score -> NoteSequence (see the module docstring for the rules)."""
  from music21 import harmony, meter  # pylint: disable=import-outside-toplevel
  info = music_pb2.NoteSequence.SourceInfo
  ns = music_pb2.NoteSequence(ticks_per_quarter=220, source_info=info(
      source_type=info.SCORE_BASED, encoding_type=info.ABC, parser=info.MUSIC21))
  ns.tempos.add(qpm=QPM)
  key = f"{filename}#{index}"
  ns.id = f"/id/abc/{collection}/{hashlib.sha1(key.encode()).hexdigest()}"
  ns.filename, ns.collection_name = key, collection
  if score.metadata is not None and score.metadata.title:
    ns.sequence_metadata.title = score.metadata.title
  parts = list(score.parts) or [score]
  signatures = {}
  chords = set()
  for instrument, part in enumerate(parts):
    shift = _pickup_shift(part)
    flat = part.stripTies().flatten()
    for ts in flat.getElementsByClass(meter.TimeSignature):
      time_ = 0.0 if ts.offset == 0 else (float(ts.offset) + shift) * _SECONDS_PER_QUARTER
      signatures.setdefault(time_, (ts.numerator, ts.denominator))
    for element in flat.notes:
      start = (float(element.offset) + shift) * _SECONDS_PER_QUARTER
      if isinstance(element, harmony.ChordSymbol):
        chords.add((start, chord_figure(element)))
        continue
      length = float(element.quarterLength)
      if length <= 0:
        continue
      velocity = element.volume.velocity or _DEFAULT_VELOCITY
      for pitch in element.pitches:
        ns.notes.add(pitch=pitch.midi, velocity=velocity, instrument=instrument,
                     start_time=start, end_time=start + length * _SECONDS_PER_QUARTER)
  previous = None
  for time_, (numerator, denominator) in sorted(signatures.items()):
    if (numerator, denominator) != previous:
      ns.time_signatures.add(time=time_, numerator=numerator, denominator=denominator)
      previous = numerator, denominator
  for time_, figure in sorted(c for c in chords if c[1] is not None):
    ns.text_annotations.add(time=time_, text=figure, annotation_type=_CHORD_SYMBOL)
  ns.total_time = max((n.end_time for n in ns.notes), default=0.0)
  return ns


def convert_file(path: pathlib.Path, collection: str
                 ) -> tuple[list[music_pb2.NoteSequence], collections.Counter]:
  """All tunes of one ABC file, and the skip counts of the ones left out."""
  import music21  # pylint: disable=import-outside-toplevel
  skips = collections.Counter()
  try:
    with warnings.catch_warnings():
      warnings.simplefilter("ignore")
      parsed = music21.converter.parse(str(path), forceSource=True)
  except Exception as e:  # pylint: disable=broad-except  # music21 raises many types
    logging.warning("%s: %s", path, e)
    skips[SkipReason.PARSE_ERROR.value] += 1
    return [], skips
  scores = list(parsed.scores) if isinstance(parsed, music21.stream.Opus) else [parsed]
  sequences = []
  for index, score in enumerate(scores):
    try:
      ns = score_to_note_sequence(score, collection=collection, filename=path.name,
                                  index=index)
    except Exception as e:  # pylint: disable=broad-except
      logging.warning("%s tune %d: %s", path, index, e)
      skips[SkipReason.CONVERSION_ERROR.value] += 1
      continue
    if not ns.notes:
      skips[SkipReason.NO_NOTES.value] += 1
      continue
    sequences.append(ns)
  return sequences, skips


def _cache_paths(cache_dir: pathlib.Path, path: pathlib.Path, collection: str
                 ) -> tuple[pathlib.Path, pathlib.Path]:
  stem = f"{_CACHE_VERSION}-{collection}-{path.stem}"
  return cache_dir / f"{stem}.tfrecord", cache_dir / f"{stem}.skips.json"


def cached_convert_file(path: pathlib.Path, collection: str, cache_dir: pathlib.Path | None
                        ) -> tuple[list[music_pb2.NoteSequence], collections.Counter]:
  """``convert_file`` through an on-disk cache (one TFRecord + skip counts per file)."""
  if cache_dir is None:
    return convert_file(path, collection)
  records, skips_file = _cache_paths(cache_dir, path, collection)
  if records.exists() and skips_file.exists():
    return (list(note_sequence_io.read_note_sequences(records)),
            collections.Counter(json.loads(skips_file.read_text())))
  sequences, skips = convert_file(path, collection)
  cache_dir.mkdir(parents=True, exist_ok=True)
  note_sequence_io.write_note_sequences(records, sequences)
  skips_file.write_text(json.dumps(skips))
  return sequences, skips


def _collection_of(path: pathlib.Path, names: Sequence[str]) -> str:
  return next(n for n in names if n in path.parts[:-1] or path.stem == n)


def iter_corpus(collections_: Sequence[str], cache_dir: pathlib.Path | None,
                skips: collections.Counter, limit_files: int | None = None,
                progress: bool = True, cache_only: bool = False
                ) -> Iterator[music_pb2.NoteSequence]:
  """NoteSequences of every tune; skip counts are accumulated into ``skips``.

  ``cache_only`` reads what an earlier (maybe unfinished) run cached and counts the
  other files as ``not_in_cache`` instead of parsing them.
  """
  if cache_only and cache_dir is None:
    raise ValueError("cache_only needs a cache_dir")
  files = corpus_files(collections_)[:limit_files]
  for path in tqdm.tqdm(files, desc="abc files", unit="file", disable=not progress):
    collection = _collection_of(path, collections_)
    if cache_only and not all(p.exists() for p in _cache_paths(cache_dir, path, collection)):
      skips[SkipReason.NOT_IN_CACHE.value] += 1
      continue
    sequences, file_skips = cached_convert_file(path, collection, cache_dir)
    skips.update(file_skips)
    yield from sequences


def main_time_signature(ns: music_pb2.NoteSequence) -> str:
  """The time signature in effect for the longest time (``'none'`` without any)."""
  signatures = sorted(ns.time_signatures, key=lambda ts: ts.time)
  if not signatures:
    return "none"
  ends = [ts.time for ts in signatures[1:]] + [max(ns.total_time, signatures[-1].time)]
  spans = collections.Counter()
  for ts, end in zip(signatures, ends):
    spans[f"{ts.numerator}/{ts.denominator}"] += end - ts.time
  return spans.most_common(1)[0][0]


def count_windows(sequences: Iterable[music_pb2.NoteSequence], seed: int = 0,
                  progress: bool = True) -> dict:
  """Per config: tunes with windows, all distinct windows, train-mode sample (<=5/tune)."""
  rng = np.random.default_rng(seed)
  uncapped = {name: dataclasses.replace(c, max_tensors_per_notesequence=None)
              for name, c in CONVERTERS.items()}
  stats = {name: collections.Counter() for name in CONVERTERS}
  seconds = dict.fromkeys(CONVERTERS, 0.0)
  signatures = collections.Counter()
  for ns in tqdm.tqdm(sequences, desc="windows", unit="tune", disable=not progress):
    signatures[main_time_signature(ns)] += 1
    for name, converter in CONVERTERS.items():
      start = time.perf_counter()
      everything = uncapped[name].to_tensors(ns, Mode.EVAL)
      sampled = converter.to_tensors(ns, Mode.TRAIN, rng)
      seconds[name] += time.perf_counter() - start
      stats[name]["sequences_with_windows"] += bool(len(everything))
      stats[name]["windows"] += len(everything)
      stats[name]["train_windows_sampled"] += len(sampled)
  return {"main_time_signatures": dict(signatures.most_common()),
          "converters": {name: dict(stats[name], seconds=round(seconds[name], 2))
                         for name in CONVERTERS}}


def add_corpus_flags(parser: argparse.ArgumentParser, collections_: Sequence[str],
                     file_kind: str) -> None:
  """The flags every music21-corpus CLI shares: collections, cache, report, limit, progress."""
  parser.add_argument("--collections", nargs="+", default=list(collections_),
                      help="music21 corpus collections to convert")
  parser.add_argument("--cache_dir", type=pathlib.Path, default=None,
                      help="per-file conversion cache (re-runs only read it)")
  parser.add_argument("--report", type=pathlib.Path, default=None,
                      help="write counts and timings to this JSON file")
  parser.add_argument("--limit_files", type=int, default=None,
                      help=f"convert only the first N {file_kind} files (for quick runs)")
  parser.add_argument("--no_progress", action="store_true")


def print_report(report: dict, path: pathlib.Path | None) -> dict:
  """Prints ``report`` as JSON and, with ``path``, writes it there too."""
  text = json.dumps(report, indent=1)
  print(text)
  if path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")
  return report


def main(argv: Sequence[str] | None = None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  add_corpus_flags(parser, DEFAULT_COLLECTIONS, "ABC")
  parser.add_argument("--output_file", type=pathlib.Path, default=None,
                      help="write all NoteSequences to this TFRecord file")
  parser.add_argument("--cache_only", action="store_true",
                      help="only read files already in --cache_dir (report a partial run)")
  args = parser.parse_args(argv)

  skips = collections.Counter()
  start = time.perf_counter()
  with pipelines.user_errors(parser):
    sequences = list(iter_corpus(args.collections, args.cache_dir, skips, args.limit_files,
                                 progress=not args.no_progress, cache_only=args.cache_only))
  convert_seconds = time.perf_counter() - start
  if args.output_file:
    note_sequence_io.write_note_sequences(args.output_file, sequences)
  report = {
      "command": " ".join(["python -m pipelines.folk_melodies",
                           *(sys.argv[1:] if argv is None else argv)]),
      "collections": args.collections,
      "tunes": len(sequences),
      "tunes_per_collection": dict(collections.Counter(ns.collection_name for ns in sequences)),
      "skipped": dict(skips),
      "convert_seconds": round(convert_seconds, 1),
      "cache_dir": str(args.cache_dir) if args.cache_dir else None,
      **count_windows(sequences, progress=not args.no_progress),
  }
  return print_report(report, args.report)


if __name__ == "__main__":
  main()
