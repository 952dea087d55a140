"""Speed of pipelines.convert_dir on the 897 Groove train MIDI files.

Links the train files (info.csv split) into a temporary folder, converts it to a
TFRecord file with 1 and 2 worker processes (wall time includes starting the
workers), and writes bench/results/convert_dir.json. Magenta's single-process
convert_dir_to_note_sequences does about 88 files/s on the same files.

  python bench/bench_convert_dir.py [--groove_dir ../shared/data/groove-v1.0.0-midionly/groove]
"""

import argparse
import csv
import json
import os
import pathlib
import platform
import statistics
import tempfile
import time

from flax_musicvae.pipelines import convert_dir

ROOT = pathlib.Path(__file__).resolve().parents[1]
DEFAULT_GROOVE = ROOT.parent / "shared" / "data" / "groove-v1.0.0-midionly" / "groove"


def link_split(groove_dir: pathlib.Path, split: str, target: pathlib.Path) -> int:
  """Symlinks the MIDI files of ``split`` into ``target`` (same relative paths)."""
  count = 0
  with open(groove_dir / "info.csv", newline="") as f:
    for row in csv.DictReader(f):
      if row["split"] == split:
        link = target / row["midi_filename"]
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(groove_dir / row["midi_filename"])
        count += 1
  return count


def time_conversion(input_dir: pathlib.Path, output: pathlib.Path, workers: int) -> dict:
  start = time.perf_counter()
  count, report = convert_dir.convert_directory(input_dir, output, num_workers=workers,
                                                progress=False)
  seconds = time.perf_counter() - start
  assert report.num_skipped == 0, report.summary()
  return {"converted": count, "seconds": seconds}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--groove_dir", type=pathlib.Path, default=DEFAULT_GROOVE)
  parser.add_argument("--repeats", type=int, default=3)
  args = parser.parse_args()
  results = {"files": None, "cpu_count": os.cpu_count(), "python": platform.python_version(),
             "magenta_reference_files_per_s": 88, "runs": {}}
  with tempfile.TemporaryDirectory() as tmp:
    input_dir = pathlib.Path(tmp) / "groove"
    results["files"] = link_split(args.groove_dir, "train", input_dir)
    for workers in (1, 2):
      runs = [time_conversion(input_dir, pathlib.Path(tmp) / "train.tfrecord", workers)
              for _ in range(args.repeats)]
      seconds = [run["seconds"] for run in runs]
      results["runs"][f"{workers}_workers"] = {
          "seconds": seconds,
          "median_files_per_s": results["files"] / statistics.median(seconds),
          "best_files_per_s": results["files"] / min(seconds),
      }
      print(f"{workers} worker(s): {results['files']} files, median "
            f"{statistics.median(seconds):.2f} s -> "
            f"{results['runs'][f'{workers}_workers']['median_files_per_s']:.1f} files/s")
  out = ROOT / "bench" / "results" / "convert_dir.json"
  out.parent.mkdir(parents=True, exist_ok=True)
  out.write_text(json.dumps(results, indent=1) + "\n")
  print(f"wrote {out}")


if __name__ == "__main__":
  main()
