"""Cold build of the cached Groove arrays (all three splits) and a warm reload.

Times ``flax_musicvae.pipelines.groove.load_groove_split`` for train, validation and test
with an empty cache directory (MIDI parsing, tfds windowing, groove encoding, .npz writing),
then again with the cache filled. Writes ``bench/results/groove_pipeline.json``.

  python bench/bench_groove_pipeline.py [--root ../shared/data/...] [--split_bars 4]
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from flax_musicvae.data.groove import GrooveConverter  # noqa: E402
from flax_musicvae.pipelines import groove  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "groove-v1.0.0-midionly" / "groove"


def _timed_splits(root, converter, cache_dir, workers) -> tuple[float, float, dict]:
  """(wall seconds, CPU seconds of this process and its workers, per-split stats)."""
  start, cpu_start = time.perf_counter(), _cpu()
  stats = {}
  for split in groove.SPLITS:
    arrays = groove.load_groove_split(root, split, converter, cache_dir,
                                      workers=workers)
    stats[split] = json.loads(str(arrays["stats"]))
    stats[split]["shape"] = list(arrays["outputs"].shape)
  return time.perf_counter() - start, _cpu() - cpu_start, stats


def _cpu() -> float:
  t = os.times()
  return t.user + t.system + t.children_user + t.children_system


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--root", default=str(DEFAULT_DATA))
  parser.add_argument("--split_bars", type=int, default=4)
  parser.add_argument("--workers", type=int, default=2)
  parser.add_argument("--out", default=str(ROOT / "bench" / "results" /
                                           "groove_pipeline.json"))
  args = parser.parse_args()
  converter = GrooveConverter(split_bars=args.split_bars)
  files = sum(len(rows) for rows in groove.read_split_index(args.root).values())
  with tempfile.TemporaryDirectory() as cache_dir:
    cold, cold_cpu, stats = _timed_splits(args.root, converter, cache_dir, args.workers)
    warm, _, _ = _timed_splits(args.root, converter, cache_dir, args.workers)
  result = dict(
      benchmark="groove pipeline: all splits -> cached groove arrays (cold cache)",
      split_bars=args.split_bars, workers=args.workers, files=files,
      cold_build_s=round(cold, 2), cold_build_cpu_s=round(cold_cpu, 2),
      files_per_s=round(files / cold, 1), warm_reload_s=round(warm, 2),
      load_average_1min=round(os.getloadavg()[0], 2), cpus=os.cpu_count(),
      python=platform.python_version(),
      splits={k: {f: v[f] for f in ("files", "windows", "examples", "shape",
                                    "windows_dropped", "files_skipped")}
              for k, v in stats.items()},
      reference_points=dict(magenta_midi_to_note_sequence_files_per_s=88,
                            note_seq_midi_file_to_note_sequence_s_per_file=0.16))
  pathlib.Path(args.out).parent.mkdir(parents=True, exist_ok=True)
  pathlib.Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
  print(json.dumps(result, indent=1))


if __name__ == "__main__":
  main()
