"""Train-step time of the MusicRNN model (forward + backward of its loss), A/B across checkouts.

Loads ``--root``'s own ``flax_musicvae`` and config files, builds each config's model at
Magenta's full size, and times ``jit(value_and_grad(loss))`` on one fixed random batch of
``--batch`` sequences of ``--length`` steps (one-hot inputs and labels, every step valid;
dropout on, as in training). Each config prints one JSON line: the median seconds per step
of ``--repeats`` timed calls, the first call (compile) and the load average.

  git worktree add /tmp/base HEAD~1
  python bench/bench_music_rnn_step.py --root /tmp/base --configs drum_kit_rnn
  python bench/bench_music_rnn_step.py --root . --configs drum_kit_rnn
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import sys
import time


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--root", default=".", help="a checkout of this project")
  parser.add_argument("--configs", nargs="+", default=["attention_rnn", "drum_kit_rnn"])
  parser.add_argument("--batch", type=int, default=8)
  parser.add_argument("--length", type=int, default=256, help="steps per sequence")
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--label", default="", help="a name for this checkout in the output")
  parser.add_argument("--output", default="",
                      help="also append the lines to this JSON list (e.g. "
                           "bench/results/music_rnn_step.json)")
  args = parser.parse_args()
  root = os.path.abspath(args.root)
  sys.path.insert(0, root)
  # pylint: disable=import-outside-toplevel  (the checkout's own modules, from --root)
  import jax
  import jax.numpy as jnp
  import numpy as np
  from flax_musicvae import config_lib
  from flax_musicvae.models import music_rnn

  for name in args.configs:
    config = config_lib.load(os.path.join(root, "configs", f"{name}.py"))
    model = music_rnn.build(config)
    spec = model.spec
    rng = np.random.default_rng(0)
    batch = {
        "inputs": jnp.asarray(jax.nn.one_hot(rng.integers(
            0, spec.input_size, (args.batch, args.length)), spec.input_size)),
        "outputs": jnp.asarray(jax.nn.one_hot(rng.integers(
            0, spec.num_classes, (args.batch, args.length)), spec.num_classes)),
        "lengths": jnp.full((args.batch,), args.length, jnp.int32)}
    params = jax.jit(model.init)(jax.random.key(0), batch)["params"]

    def loss(p, key):
      out = model.apply({"params": p}, batch, train=True, rngs={"dropout": key})
      return music_rnn.compute_loss(out)[0]

    grad = jax.jit(jax.value_and_grad(loss))
    load_before = os.getloadavg()
    start = time.perf_counter()
    jax.block_until_ready(grad(params, jax.random.key(1)))
    first = time.perf_counter() - start
    times = []
    for i in range(args.repeats):
      start = time.perf_counter()
      jax.block_until_ready(grad(params, jax.random.key(2 + i)))
      times.append(time.perf_counter() - start)
    line = {"root": args.label or root, "config": name, "batch": args.batch,
            "length": args.length, "seconds_per_step": round(statistics.median(times), 4),
            "step_seconds": [round(t, 4) for t in times], "first_call_seconds": round(first, 2),
            "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
            "command": " ".join(sys.argv)}
    print(json.dumps(line), flush=True)
    if args.output:
      out = pathlib.Path(args.output)
      lines = json.loads(out.read_text()) if out.exists() else []
      out.write_text(json.dumps(lines + [line], indent=1) + "\n")


if __name__ == "__main__":
  main()
