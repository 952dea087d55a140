"""Where a training step's time goes: per-op times of the loss + gradient, by category.

Traces one jitted ``value_and_grad`` of the training loss (full-size model, real Groove
windows or ``--synthetic``) with ``jax.profiler`` and sums the XLA ops' durations by
phase (forward / backward), place (inside a scan loop or once per step), kind (matmul
or elementwise/copy) and scope (encoder / decoder / other), from the compiled HLO's
op metadata. Durations are summed over the CPU worker threads, so shares matter, not sums.

  python bench/profile_train.py [--config groove_4bar] [--batch_size 64]
      [--compute_dtype float32] [--top 12] [--output bench/results/profile_<...>.json]
"""

from __future__ import annotations

import argparse
import collections
import gzip
import json
import pathlib
import re
import tempfile
import time

from flax_musicvae import hugepages  # pylint: disable=g-bad-import-order

if __name__ == "__main__":
  hugepages.reexec()  # as the training program does (FLAX_MUSICVAE_HUGE_PAGES=0: without)

# pylint: disable=g-import-not-at-top,wrong-import-position
import jax
import jax.numpy as jnp

import bench_train
from flax_musicvae import config_lib
from flax_musicvae import input_pipeline
from flax_musicvae import steps
from flax_musicvae.models import losses
from flax_musicvae.models import vae

ROOT = pathlib.Path(__file__).resolve().parents[1]


def category(name: str, op: str) -> tuple[str, str, str, str]:
  phase = "backward" if "transpose(" in op else "forward"
  place = "loop" if "/while/" in op else "once"
  kind = "matmul" if ("dot" in op or "einsum" in op or "->" in op) else "elementwise/copy"
  scope = ("encoder" if "encode" in op else
           "decoder" if ("decode" in op or "decoder" in op) else "other")
  del name
  return phase, place, kind, scope


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--config", default="groove_4bar")
  parser.add_argument("--batch_size", type=int, default=64)
  parser.add_argument("--compute_dtype", default="float32")
  parser.add_argument("--synthetic", action="store_true")
  parser.add_argument("--top", type=int, default=12)
  parser.add_argument("--output", default=None)
  args = parser.parse_args()

  config = config_lib.load(args.config)
  config.train.batch_size = args.batch_size
  dtype = jnp.dtype(args.compute_dtype)
  data = (bench_train.synthetic_data(config) if args.synthetic
          else input_pipeline.load_split(config, "train"))
  batch = jax.device_put(next(input_pipeline.train_batches(data, args.batch_size, 0)))
  model = vae.build_model(config)
  keys = {k: jax.random.PRNGKey(i) for i, k in enumerate(("params", "dropout", "sample"))}
  params = jax.jit(lambda: model.init(keys, vae.dummy_batch(model.spec, 1),
                                      train=False))()["params"]

  def loss_fn(p, b, rng):
    out = steps.apply_model(model, p, b, rng, train=True,
                       sampling_probability=0.0, compute_dtype=dtype)
    return losses.compute_loss(out, b, jnp.int32(100), config.model)[0]

  grad = jax.jit(jax.value_and_grad(loss_fn))
  compiled = grad.lower(params, batch, keys["dropout"]).compile()
  meta = {m.group(1): m.group(2) for m in re.finditer(
      r"%([\w.\-]+) = \S+ [^\n]*?op_name=\"([^\"]+)\"", compiled.as_text())}
  for _ in range(2):
    jax.block_until_ready(compiled(params, batch, keys["dropout"]))
  start = time.perf_counter()
  for _ in range(3):
    jax.block_until_ready(compiled(params, batch, keys["dropout"]))
  step = (time.perf_counter() - start) / 3
  with tempfile.TemporaryDirectory() as tmp:
    jax.profiler.start_trace(tmp, create_perfetto_trace=True)
    jax.block_until_ready(compiled(params, batch, keys["dropout"]))
    jax.profiler.stop_trace()
    trace = next(pathlib.Path(tmp).rglob("perfetto_trace.json.gz"))
    events = json.load(gzip.open(trace))["traceEvents"]
  by_cat: collections.Counter = collections.Counter()
  by_op: collections.Counter = collections.Counter()
  for e in events:
    name = e.get("name", "")
    if e.get("ph") != "X" or name not in meta:
      continue
    by_cat[category(name, meta[name])] += e["dur"]
    by_op[(name, meta[name].split("/", 1)[-1][-80:])] += e["dur"]
  total = sum(by_cat.values())
  result = {
      "config": args.config, "batch_size": args.batch_size, "compute_dtype": dtype.name,
      "loss_and_grad_seconds": step, "examples_per_second": args.batch_size / step,
      "share_by_category": {" / ".join(k): v / total for k, v in by_cat.most_common()},
      "top_ops": [{"op": k[0], "what": k[1], "share": v / total}
                  for k, v in by_op.most_common(args.top)],
      "load_average_1_5_15": list(__import__("os").getloadavg()),
  }
  print(f"{args.config} batch {args.batch_size} {dtype.name}: loss+grad {step * 1e3:.0f} ms, "
        f"{args.batch_size / step:.1f} examples/s")
  for k, v in result["share_by_category"].items():
    print(f"  {100 * v:5.1f}%  {k}")
  print("top ops:")
  for row in result["top_ops"]:
    print(f"  {100 * row['share']:5.1f}%  {row['op']:28s} {row['what']}")
  out = pathlib.Path(args.output or ROOT / "bench" / "results" / (
      f"profile_{args.config}_b{args.batch_size}_{dtype.name}_{jax.default_backend()}.json"))
  out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
  main()
