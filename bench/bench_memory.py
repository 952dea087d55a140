"""Peak memory (RSS) of one training step (loss + grads) per config and batch size.

Each measurement runs in a fresh subprocess so ``ru_maxrss`` is that step's peak:
  python bench/bench_memory.py --config hierdec_mel_16bar --batch 8 64 [--no-remat]
Results are merged into bench/results/memory.json keyed by "config/batch/remat".
"""

from __future__ import annotations

import argparse
import json
import pathlib
import resource
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "memory.json"


def measure(config_name: str, batch_size: int, remat: bool) -> dict:
  """Runs in the child: init (jitted) and one jitted loss+grad step at full size."""
  import jax
  import numpy as np
  from flax_musicvae.models import losses, vae

  from flax_musicvae import config_lib  # pylint: disable=import-outside-toplevel
  config = config_lib.load(config_name)
  config.model.remat = remat
  model = vae.build_model(config)
  batch = {k: np.array(v) for k, v in vae.dummy_batch(model.spec, batch_size).items()}
  batch["outputs"][..., 0] = 1.0
  rngs = {k: jax.random.PRNGKey(i) for i, k in enumerate(("params", "dropout", "sample"))}
  t0 = time.perf_counter()
  params = jax.jit(lambda b: model.init(rngs, b, train=False))(batch)["params"]
  jax.block_until_ready(params)
  init_s = time.perf_counter() - t0

  @jax.jit
  def step(params, batch):
    def loss_fn(p):
      out = model.apply({"params": p}, batch, train=True, rngs=rngs)
      return losses.compute_loss(out, batch, 1, config.model)[0]
    return jax.value_and_grad(loss_fn)(params)

  t0 = time.perf_counter()
  compiled = step.lower(params, batch).compile()
  compile_s = time.perf_counter() - t0
  t0 = time.perf_counter()
  loss, grads = jax.block_until_ready(compiled(params, batch))
  step_s = time.perf_counter() - t0
  n_params = sum(x.size for x in jax.tree.leaves(params))
  del grads
  return {"config": config_name, "batch_size": batch_size, "remat": remat,
          "num_params": int(n_params), "loss": float(loss), "init_s": round(init_s, 2),
          "compile_s": round(compile_s, 2), "step_s": round(step_s, 2),
          "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3)}


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument("--config", default="hierdec_mel_16bar")
  parser.add_argument("--batch", type=int, nargs="+", default=[8])
  parser.add_argument("--no-remat", dest="remat", action="store_false")
  parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  if args.child:
    print(json.dumps(measure(args.config, args.batch[0], args.remat)))
    return
  results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
  for bsz in args.batch:
    cmd = [sys.executable, __file__, "--child", "--config", args.config, "--batch", str(bsz)]
    if not args.remat:
      cmd.append("--no-remat")
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode:
      rec = {"config": args.config, "batch_size": bsz, "remat": args.remat,
             "error": proc.stderr.strip().splitlines()[-1] if proc.stderr else
             f"exit {proc.returncode}"}
    else:
      rec = json.loads(proc.stdout.strip().splitlines()[-1])
    print(json.dumps(rec))
    results[f"{args.config}/{bsz}/{'remat' if args.remat else 'no_remat'}"] = rec
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
  main()
