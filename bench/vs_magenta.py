r"""This project vs Magenta's original at equal cost: validation loss reached per wall-clock.

``bash bench/train_pretrained.sh vs_magenta`` trains groovae_4bar (full size, batch 64) on
the Groove MIDI Dataset's train split twice at the same time, one core each at the same
priority: Magenta's ``music_vae_train`` (a checkpoint every 60 s, its default) and a fresh
run of ours (a checkpoint every 100 steps, no evaluation during training). Wall time
counts from each process's start (data preparation, graph building and compilation
included) to each checkpoint's write. Every ``--every``-th checkpoint of each run and its
last one are evaluated afterwards by one evaluator (ours; Magenta's checkpoints imported
by ``magenta_import``, proven equal to Magenta's variables) on the same validation
windows, so the two curves share one ruler.

  python bench/vs_magenta.py --ours=/work/runs/vs_magenta_groove_4bar \
      --magenta=/work/runs/magenta_groove_4bar

Writes bench/results/vs_magenta_groove_4bar.json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import re

import numpy as np

from flax_musicvae import input_pipeline
from flax_musicvae import train
from flax_musicvae import workdir as workdir_lib
from flax_musicvae.checkpoints import magenta_import

ROOT = pathlib.Path(__file__).resolve().parents[1]
START = re.compile(r"^(\S+Z) start ")


def start_time(log: pathlib.Path) -> float:
  """Unix time of the first ``<iso time> start`` line bench/train_pretrained.sh wrote."""
  for line in log.read_text(errors="replace").splitlines():
    m = START.match(line)
    if m:
      return datetime.datetime.fromisoformat(m.group(1).replace("Z", "+00:00")).timestamp()
  raise SystemExit(f"no start line in {log}")


def _row(minutes: float, step: int, metrics: dict) -> dict:
  return {"minutes": round(minutes, 2), "step": step, "loss": round(metrics["loss"], 4),
          "r_loss": round(metrics["r_loss"], 4),
          "accuracy_teacher_forced": round(metrics["teacher_forced/accuracy"], 5),
          "accuracy_free_running": round(metrics["free_running/accuracy"], 5)}


def _every(items: list, every: int) -> list:
  """Every ``every``-th item and the last one."""
  return items[every - 1::every] + ([items[-1]] if len(items) % every else [])


def our_curve(run: pathlib.Path, t0: float, config, validation, every: int) -> list[dict]:
  rows = []
  steps = sorted(int(p.name) for p in (run / workdir_lib.CHECKPOINTS).iterdir()
                 if p.name.isdigit())
  for step in _every(steps, every):
    folder = run / workdir_lib.CHECKPOINTS / str(step)
    params, _ = workdir_lib.load_params(folder, workdir_lib.abstract_params(config))
    metrics = train.evaluate_arrays(config, params, validation, step)
    rows.append(_row((folder.stat().st_mtime - t0) / 60, step, metrics))
    print("ours", rows[-1])
  return rows


def magenta_curve(run: pathlib.Path, t0: float, config, validation, every: int) -> list[dict]:
  rows = []
  indexes = sorted((run / "train").glob("model.ckpt-*.index"),
                   key=lambda p: int(p.stem.split("-")[-1]))
  for index in _every(indexes, every):
    params, step = magenta_import.import_params(str(index.with_suffix("")), config)
    metrics = train.evaluate_arrays(config, params, validation, step)
    rows.append(_row((index.stat().st_mtime - t0) / 60, step, metrics))
    print("magenta", rows[-1])
  return rows


def at(curve: list[dict], minutes: float) -> dict | None:
  """The last point of ``curve`` reached within ``minutes`` (Magenta saves once a minute and
  not when stopped, ours also when stopped: both sides are compared at equal or less time
  for ours)."""
  within = [r for r in curve if r["minutes"] <= minutes]
  return within[-1] if within else None


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--ours", type=pathlib.Path, required=True, help="our groove_4bar run")
  parser.add_argument("--magenta", type=pathlib.Path, required=True, help="Magenta's run_dir")
  parser.add_argument("--every", type=int, default=1,
                      help="evaluate every N-th checkpoint of our run, and its last one")
  parser.add_argument("--magenta_every", type=int, default=3,
                      help="the same for Magenta's (one a minute)")
  parser.add_argument("--output", default=str(ROOT / "bench/results/vs_magenta_groove_4bar.json"))
  args = parser.parse_args()
  config = workdir_lib.load_config(args.ours)
  validation = input_pipeline.load_split(config, "validation")
  load0 = os.getloadavg()  # of the evaluation; the training pair ran with nothing else
  ours = our_curve(args.ours, start_time(args.ours.with_suffix(".log")), config, validation,
                   args.every)
  theirs = magenta_curve(args.magenta, start_time(args.magenta.with_suffix(".log")), config,
                         validation, args.magenta_every)
  budget = max(r["minutes"] for r in theirs)
  result = {
      "what": "groovae_4bar, batch 64, one core each, concurrently, from process start; "
              "validation loss by this project's evaluator (Magenta's checkpoints imported)",
      "validation_windows": int(len(validation["inputs"]) // 64 * 64),
      "last_checkpoints": {"this project": ours[-1], "magenta": theirs[-1]},
      f"at Magenta's last checkpoint ({budget} min)": {"this project": at(ours, budget),
                                                      "magenta": theirs[-1]},
      "steps_per_minute": {
          "this project": round(float(np.polyfit([r["minutes"] for r in ours],
                                                 [r["step"] for r in ours], 1)[0]), 1)
          if len(ours) > 1 else None,
          "magenta": round(float(np.polyfit([r["minutes"] for r in theirs],
                                            [r["step"] for r in theirs], 1)[0]), 1)
          if len(theirs) > 1 else None},
      "curves": {"this project": ours, "magenta": theirs},
      "load_average_at_evaluation": load0}
  pathlib.Path(args.output).write_text(json.dumps(result, indent=1) + "\n")
  print(json.dumps({k: v for k, v in result.items() if k != "curves"}, indent=1))
  print(f"wrote {args.output}")


if __name__ == "__main__":
  main()
