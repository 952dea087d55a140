"""Size and latency of an exported full-size groove_4bar ``sample`` (JAX vs LiteRT).

  python bench/bench_export.py [--export_dir=/tmp/bench_export] [--repeats=200]

Exports groove_4bar (random weights: latency and size do not depend on their values)
at batch 1 and 64, then times one ``sample`` call (z noise + hit noise -> a 4-bar
groove) with jitted JAX and with LiteRT fp32 / fp16 / int8 at 1 and 2 threads.
Writes ``bench/results/export.json``. Run it on an idle machine (the load average at
start is recorded).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import statistics
import sys
import time

import jax
import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from flax_musicvae import config_lib  # pylint: disable=g-import-not-at-top,wrong-import-position
from flax_musicvae.export import bundle  # pylint: disable=wrong-import-position
from flax_musicvae.export import signatures  # pylint: disable=wrong-import-position
from flax_musicvae.models import build_model  # pylint: disable=wrong-import-position

BATCH_SIZES = (1, 64)
QUANTIZATIONS = ("fp32", "fp16", "int8")
THREADS = (1, 2)


def groove_4bar_config():
  return config_lib.groove_config("groovae_4bar", split_bars=4)


def time_calls(fn, repeats: int) -> dict[str, float]:
  """Milliseconds per call: min and median over ``repeats`` after 3 warm-up calls."""
  for _ in range(3):
    fn()
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append((time.perf_counter() - start) * 1e3)
  return {"min_ms": min(times), "median_ms": statistics.median(times), "repeats": repeats}


def sample_inputs(meta: dict, seed: int = 0) -> dict[str, np.ndarray]:
  rng = np.random.default_rng(seed)
  specs = meta["signatures"]["sample"]["inputs"]
  return {"z_noise": rng.standard_normal(specs["z_noise"]["shape"]).astype(np.float32),
          "noise": rng.random(specs["noise"]["shape"]).astype(np.float32),
          "temperature": np.float32(1.0)}


def bench_jax(model, params, inputs: dict[str, np.ndarray], repeats: int) -> dict:
  fn = jax.jit(lambda p, z, n, t: signatures.sample(model, p, z, n, t)["outputs"])
  args = (params, inputs["z_noise"], inputs["noise"], inputs["temperature"])
  return time_calls(lambda: jax.block_until_ready(fn(*args)), repeats)


def bench_lite(path: pathlib.Path, inputs: dict[str, np.ndarray], threads: int,
               repeats: int) -> dict:
  from ai_edge_litert.interpreter import Interpreter  # pylint: disable=g-import-not-at-top
  runner = Interpreter(model_path=str(path), num_threads=threads).get_signature_runner(
      "sample")
  return time_calls(lambda: runner(**inputs), repeats)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--export_dir", type=pathlib.Path, default=pathlib.Path(
      "/tmp/bench_export"), help="export cache (reused when its metadata exists)")
  parser.add_argument("--repeats", type=int, default=200,
                      help="timed calls at batch 1 (batch 64: a tenth)")
  parser.add_argument("--output", type=pathlib.Path,
                      default=ROOT / "bench" / "results" / "export.json")
  args = parser.parse_args()

  load_at_start = os.getloadavg()
  config = groove_4bar_config()
  model = build_model(config)
  params = bundle.init_params(model, seed=0)
  results = {"config": config.name, "model": "full size, random weights",
             "command": "python bench/bench_export.py", "machine": platform.processor() or
             platform.machine(), "cpu_count": os.cpu_count(),
             "loadavg_at_start": load_at_start, "jax": jax.__version__, "batches": {}}
  for batch in BATCH_SIZES:
    out_dir = args.export_dir / f"b{batch}"
    if (out_dir / bundle.METADATA_FILE).exists():
      meta = json.loads((out_dir / bundle.METADATA_FILE).read_text())
    else:
      start = time.perf_counter()
      meta = bundle.export_bundle(config, params, out_dir, batch, QUANTIZATIONS)
      results.setdefault("export_seconds", {})[f"b{batch}"] = time.perf_counter() - start
    repeats = max(args.repeats // (10 if batch > 1 else 1), 5)
    inputs = sample_inputs(meta)
    row = {"sizes_mb": {q: meta["files"][bundle.tflite_name(q)]["bytes"] / 1e6
                        for q in QUANTIZATIONS},
           "jax_ms": bench_jax(model, params, inputs, repeats), "litert_ms": {}}
    for q in QUANTIZATIONS:
      for threads in THREADS:
        row["litert_ms"][f"{q}_threads{threads}"] = bench_lite(
            out_dir / bundle.tflite_name(q), inputs, threads, repeats)
    results["batches"][f"b{batch}"] = row
    print(json.dumps({f"b{batch}": row}, indent=1), flush=True)
  results["loadavg_at_end"] = os.getloadavg()
  args.output.parent.mkdir(parents=True, exist_ok=True)
  args.output.write_text(json.dumps(results, indent=2) + "\n")
  print(f"wrote {args.output}")


if __name__ == "__main__":
  main()
