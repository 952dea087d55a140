r"""This project vs Magenta's original at equal cost: validation loss reached per wall-clock.

Both trained groovae_4bar (full size, batch 64) on the Groove MIDI Dataset's train split,
each pinned to one core of this machine at the same priority, at the same time (as
``bench/train_pretrained.sh`` runs them: ours in one lane, Magenta's ``music_vae_train``
in the other). Wall time counts from each process's start (data preparation, graph
building and compilation included). Every kept Magenta checkpoint is imported
(``magenta_import``, proven equal to Magenta's variables) and evaluated by the same
evaluator as ours, on the same validation windows, so the two curves share one ruler.
Our curve is the run's own evaluations (TensorBoard event times).

  python bench/vs_magenta.py --ours=/work/runs/groove_4bar --magenta=/work/runs/magenta_groove_4bar

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


def our_curve(run: pathlib.Path, t0: float) -> list[dict]:
  """(minutes, step, validation metrics) of each evaluation of our run."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  events = run / "tensorboard" / "eval" / "events.out.tfevents.flax_musicvae"
  times = {e.step: e.wall_time for e in tf.compat.v1.train.summary_iterator(str(events))
           if e.summary.value}
  rows = [r for r in workdir_lib.read_metrics(run) if r["split"] == "eval"]
  return [{"minutes": round((times[r["step"]] - t0) / 60, 2), "step": r["step"],
           "loss": r["loss"], "r_loss": r["r_loss"],
           "accuracy_teacher_forced": r["teacher_forced/accuracy"],
           "accuracy_free_running": r["free_running/accuracy"]} for r in rows]


def magenta_curve(run: pathlib.Path, t0: float, config, validation, every: int) -> list[dict]:
  """The same numbers for every ``every``-th checkpoint of a Magenta run (and its last one),
  by our evaluator."""
  rows = []
  indexes = sorted((run / "train").glob("model.ckpt-*.index"),
                   key=lambda p: int(p.stem.split("-")[-1]))
  for index in indexes[every - 1::every] + ([indexes[-1]] if len(indexes) % every else []):
    params, step = magenta_import.import_params(str(index.with_suffix("")), config)
    m = train.evaluate_arrays(config, params, validation, step)
    rows.append({"minutes": round((index.stat().st_mtime - t0) / 60, 2), "step": step,
                 "loss": m["loss"], "r_loss": m["r_loss"],
                 "accuracy_teacher_forced": m["teacher_forced/accuracy"],
                 "accuracy_free_running": m["free_running/accuracy"]})
    print(rows[-1])
  return rows


def at(curve: list[dict], minutes: float) -> dict | None:
  """The last point of ``curve`` reached within ``minutes``."""
  within = [r for r in curve if r["minutes"] <= minutes]
  return within[-1] if within else None


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--ours", type=pathlib.Path, required=True, help="our groove_4bar run")
  parser.add_argument("--magenta", type=pathlib.Path, required=True, help="Magenta's run_dir")
  parser.add_argument("--every", type=int, default=5,
                      help="evaluate every N-th Magenta checkpoint (they come every 60 s)")
  parser.add_argument("--output", default=str(ROOT / "bench/results/vs_magenta_groove_4bar.json"))
  args = parser.parse_args()
  config = workdir_lib.load_config(args.ours)
  validation = input_pipeline.load_split(config, "validation")
  load0 = os.getloadavg()
  ours = our_curve(args.ours, start_time(args.ours.with_suffix(".log")))
  theirs = magenta_curve(args.magenta, start_time(args.magenta.with_suffix(".log")), config,
                         validation, args.every)
  budget = max(r["minutes"] for r in theirs)
  result = {
      "what": "groovae_4bar, batch 64, one core each, concurrently; validation loss by this "
              "project's evaluator (Magenta's checkpoints imported)",
      "validation_windows": int(len(validation["inputs"]) // 64 * 64),
      "budget_minutes": budget,
      "at_budget": {"this project": at(ours, budget), "magenta": at(theirs, budget)},
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
  print(json.dumps(result["at_budget"], indent=1))
  print(f"wrote {args.output}")


if __name__ == "__main__":
  main()
