"""Train-step time of one config in another checkout of this project (A/B across commits).

Loads ``--root``'s own code and config file (no installed package, no data: one fixed
batch of ``bench_train.synthetic_data``), compiles its jitted train step (set up by
``bench_train.train_step_setup``, which uses only APIs those commits have), then times
``--steps`` steps. Uses only APIs that every commit since the recurrence re-plan's parent
(d218926) has, so an old checkout made with ``git worktree add /tmp/base d218926`` and
the current tree can be timed alike, one after the other:

  python bench/ab_train_step.py --root /tmp/base --config hierdec_mel_16bar --batch_size 8
  GLIBC_TUNABLES=glibc.malloc.hugetlb=1 python bench/ab_train_step.py --root . ...

MusicRNN configs take ``--length`` steps per sequence (e.g. ``--config drum_kit_rnn
--length 256``); their A/B needs a checkout that has MusicRNN.

Prints one JSON line (median examples/s, per-step seconds, the load average).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import time


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--root", required=True, help="a checkout of this project")
  parser.add_argument("--config", default="groove_4bar")
  parser.add_argument("--batch_size", type=int, default=8)
  parser.add_argument("--steps", type=int, default=3)
  parser.add_argument("--compute_dtype", default="float32")
  parser.add_argument("--length", type=int, default=256,
                      help="MusicRNN configs: steps per sequence (MusicVAE: the config's)")
  args = parser.parse_args()
  root = os.path.abspath(args.root)
  sys.path.insert(0, root)
  # pylint: disable=g-import-not-at-top  (the checkout's modules, from --root)
  import jax
  import numpy as np
  import bench_train

  spec = importlib.util.spec_from_file_location("config", f"{root}/configs/{args.config}.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config()
  config.train.batch_size = args.batch_size
  config.train.compute_dtype = args.compute_dtype
  data = bench_train.synthetic_data(config, examples=args.batch_size, length=args.length)
  state, step, batch_sharding = bench_train.train_step_setup(config, data)
  batch = jax.device_put(data, batch_sharding)
  load_before = os.getloadavg()
  start = time.perf_counter()
  state, metrics = step(state, batch)
  jax.block_until_ready(metrics)
  first = time.perf_counter() - start
  times = []
  for _ in range(args.steps):
    start = time.perf_counter()
    state, metrics = step(state, batch)
    jax.block_until_ready(metrics)
    times.append(time.perf_counter() - start)
  print(json.dumps({
      "root": root, "config": args.config, "batch_size": args.batch_size,
      "length": int(data["inputs"].shape[1]),
      "compute_dtype": args.compute_dtype, "glibc_tunables": os.environ.get("GLIBC_TUNABLES", ""),
      "first_step_seconds_incl_compile": round(first, 1),
      "step_seconds": [round(t, 3) for t in times],
      "median_examples_per_second": round(args.batch_size / float(np.median(times)), 3),
      "final_loss": float(metrics["loss"]), "load_before": load_before,
      "load_after": os.getloadavg()}))


if __name__ == "__main__":
  main()
