"""MusicRNN training-step time side by side with the original Magenta, in one invocation.

For each config and batch size, one after the other on this machine, times the full training
step (forward, backward, clip to ``clip_norm``, Adam update) of

* this project: the jitted train step the trainer runs (``steps.make_train_step`` via
  ``bench_train.train_step_setup``), on one fixed synthetic batch already on the device;
* Magenta 2.1.4 (TF1 graph; ``../shared/peers/README.md``): the graph of
  ``events_rnn_graph.get_build_graph_fn('train', config)`` with Magenta's own
  ``default_configs`` entry and ``batch_size=B`` (all else its default), fed by its queue
  runners from a TFRecord of synthetic SequenceExamples (``make_sequence_example``),
  timing ``sess.run([train_op, loss])``. It runs in a subprocess under the Magenta venv's python
  (this file in ``--magenta_worker`` mode).

Both sides get T-step sequences (every step valid) of random one-hot inputs and random
labels of the config's sizes, dropout on (Magenta's keep probability). The first
``--warmup`` steps (compile / graph start-up, queue fill) are not timed; each figure is the
median of ``--repeats`` timed steps (``magenta/ours``: Magenta's seconds per step over
ours). Trainable parameter counts of both sides must match (the table says DIFFER if not).
Both steps fetch the loss, and both clip each variable's gradient to norm ``clip_norm`` on
its own (tf_slim's ``create_train_op``; ``optim`` ``clip_mode='per_variable'``).
Every process inherits this one's environment (the huge-page malloc the training program
sets up, unless ``FLAX_MUSICVAE_HUGE_PAGES=0``). Benchmark only an idle machine.

  python bench/music_rnn_vs_magenta.py [--configs attention_rnn drum_kit_rnn lookback_rnn]
      [--batch_sizes 8 64] [--length 256] [--warmup 3] [--repeats 10] [--output PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import sys
import tempfile
import time
from typing import Callable

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
MAGENTA_ENV = {"TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "1"}


def synthetic_examples(n: int, length: int, input_size: int, num_classes: int
                       ) -> tuple[np.ndarray, np.ndarray]:
  """``n`` sequences: one-hot inputs ``[n, length, input_size]`` and labels ``[n, length]``."""
  rng = np.random.default_rng(0)
  inputs = np.eye(input_size, dtype=np.float32)[rng.integers(0, input_size, (n, length))]
  return inputs, rng.integers(0, num_classes, (n, length))


def load_average() -> list[float]:
  return [round(x, 2) for x in os.getloadavg()]


def time_steps(step: Callable[[], float], warmup: int, repeats: int) -> dict:
  """Runs ``step`` (blocking; returns the loss) ``warmup`` times untimed, then ``repeats``
  times timed."""
  start = time.perf_counter()
  losses = [step() for _ in range(warmup)]
  warmup_seconds = time.perf_counter() - start
  load_before = load_average()
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    losses.append(step())
    times.append(time.perf_counter() - start)
  return {"seconds_per_step": statistics.median(times),
          "step_seconds": [round(t, 4) for t in times],
          "warmup_seconds": round(warmup_seconds, 2),
          "losses": [round(float(x), 4) for x in losses],
          "load_average_before": load_before, "load_average_after": load_average()}


def magenta_worker(args: argparse.Namespace) -> None:
  """(Magenta venv) Times Magenta's train op; prints one JSON line."""
  # pylint: disable=import-outside-toplevel  (only the Magenta venv has these)
  import importlib
  import tensorflow.compat.v1 as tf
  from magenta.models.shared import events_rnn_graph
  from magenta.pipelines import pipelines_common
  from tensorflow.python.framework import ops

  tf.disable_v2_behavior()   # as Magenta's *_rnn_train programs do
  # tf_slim's gradient clipping looks for ops.IndexedSlices, which TF 2.21 moved elsewhere.
  ops.IndexedSlices = tf.IndexedSlices
  module = args.magenta_module
  config = importlib.import_module(
      f"magenta.models.{module}.{module}_model").default_configs[args.magenta_id]
  config.hparams.parse(f"batch_size={args.batch}")
  encoder = config.encoder_decoder
  inputs, labels = synthetic_examples(args.batch, args.length, encoder.input_size,
                                      encoder.num_classes)
  with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, "examples.tfrecord")
    with tf.io.TFRecordWriter(path) as writer:
      for x, y in zip(inputs, labels):
        writer.write(pipelines_common.make_sequence_example(
            x.tolist(), y.tolist()).SerializeToString())
    with tf.Graph().as_default():
      events_rnn_graph.get_build_graph_fn(
          "train", config, sequence_example_file_paths=[path])()
      fetches = [tf.get_collection("train_op")[0], tf.get_collection("loss")[0]]
      variables = {v.name: v.shape.as_list() for v in tf.trainable_variables()}
      with tf.Session() as sess:
        sess.run([tf.global_variables_initializer(), tf.local_variables_initializer()])
        coord = tf.train.Coordinator()
        threads = tf.train.start_queue_runners(sess, coord)
        try:
          timing = time_steps(lambda: sess.run(fetches)[1], args.warmup, args.repeats)
        finally:
          coord.request_stop()
          coord.join(threads, stop_grace_period_secs=10)
  print(json.dumps({
      **timing, "parameters": sum(int(np.prod(s)) for s in variables.values()),
      "trainable_variables": variables, "input_size": int(encoder.input_size),
      "num_classes": int(encoder.num_classes), "hparams": config.hparams.values(),
      "tensorflow": tf.__version__}))


def ours(name: str, batch: int, length: int, warmup: int, repeats: int) -> dict:
  """Times this project's jitted train step on one fixed synthetic batch."""
  # pylint: disable=import-outside-toplevel  (not in the Magenta venv)
  import jax
  import bench_train
  from flax_musicvae import config_lib
  from flax_musicvae import input_pipeline
  from flax_musicvae.models import music_rnn

  config = config_lib.load(name)
  config.train.batch_size = batch
  spec = music_rnn.build(config).spec
  inputs, labels = synthetic_examples(batch, length, spec.input_size, spec.num_classes)
  data = {"inputs": inputs, "outputs": np.eye(spec.num_classes, dtype=np.float32)[labels],
          "lengths": np.full((batch,), length, np.int32)}
  state, step_fn, batch_sharding = bench_train.train_step_setup(config, data)
  device_batch = input_pipeline.shard_batch(data, batch_sharding)
  parameters = sum(int(x.size) for x in jax.tree.leaves(state.params))

  def step() -> float:
    nonlocal state
    state, metrics = step_fn(state, device_batch)
    return float(metrics["loss"])

  return {**time_steps(step, warmup, repeats), "parameters": parameters,
          "input_size": spec.input_size, "num_classes": spec.num_classes,
          "jax": jax.__version__, "backend": jax.default_backend()}


def magenta(python: pathlib.Path, name: str, batch: int, length: int, warmup: int,
            repeats: int) -> dict:
  """Runs :func:`magenta_worker` for ``name`` (our config file name) under ``python``."""
  # pylint: disable=import-outside-toplevel
  import bench_vs_peers
  from flax_musicvae.music_rnn import configs

  mc = configs.magenta_config(name)
  stdout, _, _ = bench_vs_peers.run(
      [str(python), __file__, "--magenta_worker", "--magenta_module", mc.model,
       "--magenta_id", configs.CONFIG_ALIASES.get(name, name), "--batch", str(batch),
       "--length", str(length), "--warmup", str(warmup), "--repeats", str(repeats)],
      env=dict(os.environ, **MAGENTA_ENV))
  return json.loads(stdout.strip().splitlines()[-1])


HEADER = (f"{'config':<16}{'batch':>6}{'ours s/step':>13}{'magenta s/step':>16}"
          f"{'ours ex/s':>11}{'magenta ex/s':>14}{'magenta/ours':>14}  parameters")


def table_row(run: dict) -> str:
  a, b = run["ours"], run["magenta"]
  params = (f"{a['parameters']} both" if run["parameters_equal"] else
            f"DIFFER: ours {a['parameters']}, magenta {b['parameters']}")
  return (f"{run['config']:<16}{run['batch']:>6}{a['seconds_per_step']:>13.4f}"
          f"{b['seconds_per_step']:>16.4f}{a['examples_per_second']:>11.1f}"
          f"{b['examples_per_second']:>14.1f}{run['speedup']:>13.2f}x  {params}")


def main() -> None:
  # pylint: disable=import-outside-toplevel
  import bench_vs_peers

  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--configs", nargs="+",
                      default=["attention_rnn", "drum_kit_rnn", "lookback_rnn"],
                      help="config file names in configs/ (MusicRNN ones)")
  parser.add_argument("--batch_sizes", nargs="+", type=int, default=[8, 64],
                      help="B, the same on both sides")
  parser.add_argument("--length", type=int, default=256, help="steps per sequence (T)")
  parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
  parser.add_argument("--repeats", type=int, default=10, help="timed steps (median)")
  parser.add_argument("--magenta_python", default=str(
      bench_vs_peers.PEERS_HOME / "magenta" / "venv" / "bin" / "python"),
                      help="python of the Magenta 2.1.4 venv (../shared/peers/README.md)")
  parser.add_argument("--output", default=str(ROOT / "bench" / "results" /
                                              "music_rnn_vs_magenta.json"),
                      help="results JSON (per run: both sides' s/step, examples/s, "
                           "parameter counts, step times, losses, load averages)")
  args = parser.parse_args()

  python = pathlib.Path(args.magenta_python)
  if not python.exists():
    sys.exit(f"missing {python}: install Magenta (../shared/peers/magenta/install.sh)")
  result = {"command": " ".join(sys.orig_argv), "machine": bench_vs_peers.cpu_facts(),
            "glibc_tunables": os.environ.get("GLIBC_TUNABLES", ""), "length": args.length,
            "warmup": args.warmup, "repeats": args.repeats, "runs": []}
  for name in args.configs:
    for batch in args.batch_sizes:
      run = {"config": name, "batch": batch}
      for side, fn in (("ours", ours), ("magenta", lambda *a: magenta(python, *a))):
        r = fn(name, batch, args.length, args.warmup, args.repeats)
        r["examples_per_second"] = batch / r["seconds_per_step"]
        run[side] = r
      a, b = run["ours"], run["magenta"]
      sizes = ("input_size", "num_classes")
      if [a[k] for k in sizes] != [b[k] for k in sizes]:
        sys.exit(f"{name}: input/label sizes differ: ours {[a[k] for k in sizes]}, "
                 f"magenta {[b[k] for k in sizes]}")
      run["parameters_equal"] = a["parameters"] == b["parameters"]
      run["speedup"] = b["seconds_per_step"] / a["seconds_per_step"]
      result["runs"].append(run)
      print(HEADER + "\n" + table_row(run), flush=True)
  print("\n" + "\n".join([HEADER] + [table_row(run) for run in result["runs"]]))
  out = pathlib.Path(args.output)
  out.parent.mkdir(parents=True, exist_ok=True)
  out.write_text(json.dumps(result, indent=1) + "\n")
  print("wrote", out)


def worker_main() -> None:
  parser = argparse.ArgumentParser(description="(internal) time Magenta's train op")
  parser.add_argument("--magenta_worker", action="store_true")
  parser.add_argument("--magenta_module", required=True, help="e.g. melody_rnn")
  parser.add_argument("--magenta_id", required=True, help="its default_configs key")
  for flag in ("--batch", "--length", "--warmup", "--repeats"):
    parser.add_argument(flag, type=int, required=True)
  magenta_worker(parser.parse_args())


if __name__ == "__main__":
  if "--magenta_worker" in sys.argv:
    worker_main()
  else:
    from flax_musicvae import hugepages  # pylint: disable=g-import-not-at-top
    hugepages.reexec()   # as the training program does (FLAX_MUSICVAE_HUGE_PAGES=0: without)
    main()
