"""Training throughput of a full-size model on this machine (default groove_4bar, batch 64).

Times the real training path (background prefetch, device transfer, the jitted sharded
train step) on the cached Groove train split, after a warm-up that includes the compile.
The model's matmul FLOPs per example are counted from the jaxpr of its forward pass
(``flax_musicvae.flops``; any architecture, hierarchical included; training = 3x forward,
the usual model-FLOPs convention, so remat recomputation does not count) and compared
with the device's peak measured on a large ``jnp.dot`` in the compute dtype (model FLOP
utilisation). The original Magenta does 64-100 examples/s on this kind of CPU machine
(reference README).

``--compute_dtype bfloat16`` times mixed precision (``train.compute_dtype``); CPUs
without bf16 matmul units gain nothing from it. On a GPU, e.g.
``--config hierdec_mel_16bar --batch_size 512 --compute_dtype bfloat16``.

  python bench/bench_train.py [--config groove_4bar] [--batch_size 64] [--steps 30]
      [--compute_dtype float32] [--data_path PATH | --synthetic]
      [--output bench/results/train_<config>_<backend>.json]
"""

import argparse
import functools
import json
import os
import pathlib
import platform
import time

if __name__ == "__main__":  # (not on import: ab_train_step imports this beside old checkouts)
  from flax_musicvae import hugepages  # pylint: disable=g-import-not-at-top
  hugepages.reexec()  # as the training program does (FLAX_MUSICVAE_HUGE_PAGES=0: without)

# pylint: disable=g-import-not-at-top,wrong-import-position
import jax
import jax.numpy as jnp
import numpy as np

from flax_musicvae import config_lib
from flax_musicvae import flops
from flax_musicvae import input_pipeline
from flax_musicvae import optim
from flax_musicvae import steps
from flax_musicvae.models import vae

ROOT = pathlib.Path(__file__).resolve().parents[1]
MAGENTA_EXAMPLES_PER_SECOND = (64, 100)


def forward_flops_per_example(config) -> int:
  """Matmul FLOPs of one example's training-mode forward pass (from the jaxpr)."""
  model = vae.build_model(config)
  batch = vae.dummy_batch(config.model, 1)
  keys = {k: jax.random.PRNGKey(i) for i, k in enumerate(("params", "dropout", "sample"))}
  params = jax.eval_shape(lambda: model.init(keys, batch, train=False))["params"]
  forward = functools.partial(
      steps.apply_model, model, train=True, sampling_probability=0.0,
      compute_dtype=jnp.dtype(config.train.compute_dtype))
  return flops.matmul_flops(lambda p, b: forward(p, b, keys["dropout"]), params, batch)


def synthetic_data(config, examples: int = 4096, length: int = 256) -> dict:
  """Random examples with the model's shapes.

  MusicVAE: windows of 0/1 hits (categorical one-hot rows or multi-hot); MusicRNN
  (``model.architecture``): ``length`` steps of one-hot inputs and labels, all valid.
  """
  rng = np.random.default_rng(0)
  if config.model.get("architecture", "music_vae") == "music_rnn":
    spec = vae.build_model(config).spec
    eye_in, eye_out = np.eye(spec.input_size, dtype=np.float32), np.eye(
        spec.num_classes, dtype=np.float32)
    return {"inputs": eye_in[rng.integers(0, spec.input_size, (examples, length))],
            "outputs": eye_out[rng.integers(0, spec.num_classes, (examples, length))],
            "lengths": np.full((examples,), length, np.int32)}
  shapes = jax.tree.map(lambda x: x.shape[1:], vae.dummy_batch(vae.ModelSpec.from_config(
      config.model), 1))
  t, depth = shapes["outputs"]
  outputs = (rng.random((examples, t, depth)) < 0.1).astype(np.float32)
  return {"inputs": outputs if shapes["inputs"] == shapes["outputs"] else
          rng.random((examples,) + shapes["inputs"]).astype(np.float32),
          "outputs": outputs,
          "controls": np.zeros((examples,) + shapes["controls"], np.float32),
          "lengths": np.full((examples,), t, np.int32)}


def peak_flops(dtype, n: int = 2048, repeats: int = 10) -> float:
  """Best matmul FLOP/s of ``jnp.dot`` on [n, n] x [n, n] in ``dtype``."""
  a = jnp.ones((n, n), dtype)
  dot = jax.jit(jnp.dot)
  dot(a, a).block_until_ready()
  best = float("inf")
  for _ in range(repeats):
    start = time.perf_counter()
    dot(a, a).block_until_ready()
    best = min(best, time.perf_counter() - start)
  return 2 * n**3 / best


def train_step_setup(config, train_data) -> tuple:
  """The initial state, the jitted train step and the batch sharding, as ``train`` makes them."""
  mesh = steps.create_mesh()
  model = vae.build_model(config)
  tx = optim.create_optimizer(config.train)
  state = steps.init_train_state(config, model, tx, train_data, mesh)
  step_fn = steps.make_train_step(config, model, tx, mesh)
  _, batch_sharding = steps.shardings(mesh)
  return state, step_fn, batch_sharding


def time_training(config, train_data, steps: int, warmup: int) -> dict:
  state, step_fn, batch_sharding = train_step_setup(config, train_data)
  batches = input_pipeline.train_batches(train_data, config.train.batch_size, 0)
  with input_pipeline.Prefetcher(
      batches, lambda b: input_pipeline.shard_batch(b, batch_sharding)) as prefetched:
    start = time.perf_counter()
    for _ in range(warmup):
      state, metrics = step_fn(state, next(prefetched))
    jax.block_until_ready(metrics)
    warmup_seconds = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(steps):
      state, metrics = step_fn(state, next(prefetched))
    jax.block_until_ready(metrics)
    seconds = time.perf_counter() - start
  return {"warmup_steps": warmup, "warmup_seconds_incl_compile": warmup_seconds,
          "timed_steps": steps, "seconds": seconds, "final_loss": float(metrics["loss"])}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--config", default="groove_4bar")
  parser.add_argument("--batch_size", type=int, default=64)
  parser.add_argument("--steps", type=int, default=30)
  parser.add_argument("--warmup", type=int, default=3)
  parser.add_argument("--compute_dtype", default="float32")
  parser.add_argument("--output", default=None)
  parser.add_argument("--synthetic", action="store_true",
                      help="random one-hot/0-1 windows of the model's shapes instead of the "
                           "dataset (throughput only; e.g. on an accelerator machine without it)")
  parser.add_argument("--data_path", default=None,
                      help="config.data.path (e.g. the folk NoteSequence TFRecord for melody "
                           "configs); default: the config's")
  args = parser.parse_args()

  config = config_lib.load(args.config)
  config.train.batch_size = args.batch_size
  config.train.compute_dtype = args.compute_dtype
  if args.data_path:
    config.data.path = args.data_path
  train_data = (synthetic_data(config) if args.synthetic
                else input_pipeline.load_split(config, "train"))
  timing = time_training(config, train_data, args.steps, args.warmup)
  steps_per_second = timing["timed_steps"] / timing["seconds"]
  examples_per_second = steps_per_second * args.batch_size
  flops_per_example = 3 * forward_flops_per_example(config)
  backend = jax.default_backend()
  peak = peak_flops(jnp.dtype(args.compute_dtype), 2048 if backend == "cpu" else 8192)
  achieved = examples_per_second * flops_per_example
  result = {
      "config": args.config, "batch_size": args.batch_size,
      "compute_dtype": args.compute_dtype, **timing,
      "steps_per_second": steps_per_second, "examples_per_second": examples_per_second,
      "magenta_examples_per_second": MAGENTA_EXAMPLES_PER_SECOND,
      "speedup_vs_magenta": [examples_per_second / m for m in MAGENTA_EXAMPLES_PER_SECOND],
      "train_matmul_flops_per_example": flops_per_example,
      "achieved_flops_per_second": achieved,
      "peak_matmul_flops_per_second": peak, "fraction_of_peak": achieved / peak,
      "devices": [str(d) for d in jax.devices()], "jax": jax.__version__,
      "cpu_count": os.cpu_count(), "cpu_affinity": sorted(os.sched_getaffinity(0)),
      "load_average_1_5_15": os.getloadavg(), "machine": platform.machine(),
      "processor": platform.processor(),
      "glibc_tunables": os.environ.get("GLIBC_TUNABLES", ""),
  }
  default = ROOT / "bench" / "results" / f"train_{args.config}_{backend}.json"
  out = pathlib.Path(args.output or default)
  out.parent.mkdir(parents=True, exist_ok=True)
  out.write_text(json.dumps(result, indent=1) + "\n")
  print(json.dumps(result, indent=1))


if __name__ == "__main__":
  main()
