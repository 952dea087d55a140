"""Generation speed: one 4-bar groove at batch 1 on CPU, and the CLI's ``sample`` command.

* ``decode``: ``MusicVAEModel.decode_to_tensors`` of one z with the full-size
  groove_4bar (after compilation; median of ``--repeats``), and ``sample`` (z draw +
  decode + conversion to a NoteSequence).
* ``cli``: wall time of ``python -m flax_musicvae.generate --mode=sample
  --num_outputs=1`` as a subprocess, first run (cold caches) and warm runs (persistent
  XLA, export and parameter caches filled), with and without the PNG; wall and CPU
  (user + system) seconds, since a busy shared machine inflates wall time. Magenta's
  ``music_vae_generate`` takes about 7.2 s for the same command.

Uses ``--workdir`` when given, else random-init full-size parameters saved to a temporary
workdir (speed does not depend on the weights). Writes bench/results/generate.json.

  python bench/bench_generate.py [--workdir /tmp/groove_4bar] [--repeats 50]
"""

import argparse
import json
import os
import pathlib
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import jax

from flax_musicvae import config_lib
from flax_musicvae import inference

ROOT = pathlib.Path(__file__).resolve().parents[1]


def time_decode(model: inference.MusicVAEModel, repeats: int) -> dict:
  z = model.sample_z(1, seed=0)
  t0 = time.perf_counter()
  model.decode_to_tensors(z, 0.5, seed=0)
  compile_s = time.perf_counter() - t0
  decode, decode_cpu, sample = [], [], []
  for i in range(repeats):
    t0, c0 = time.perf_counter(), time.process_time()
    model.decode_to_tensors(z, 0.5, seed=i)
    decode.append(time.perf_counter() - t0)
    decode_cpu.append(time.process_time() - c0)
  for i in range(repeats):
    t0 = time.perf_counter()
    model.sample(1, seed=i)
    sample.append(time.perf_counter() - t0)
  ms = lambda xs: round(1e3 * statistics.median(xs), 3)  # noqa: E731
  return {"first_call_s": round(compile_s, 3), "decode_ms_median": ms(decode),
          "decode_ms_min": round(1e3 * min(decode), 3), "decode_cpu_ms_median": ms(decode_cpu),
          "sample_to_note_sequence_ms_median": ms(sample)}


def _children_cpu() -> float:
  usage = resource.getrusage(resource.RUSAGE_CHILDREN)
  return usage.ru_utime + usage.ru_stime


def time_cli(workdir: str, out_dir: str, runs: int, png: bool) -> tuple[list, list]:
  """Wall and CPU (user + system) seconds of each run."""
  cmd = [sys.executable, "-m", "flax_musicvae.generate", f"--workdir={workdir}",
         "--mode=sample", "--num_outputs=1", f"--output_dir={out_dir}",
         "--png" if png else "--no-png"]
  walls, cpus = [], []
  for _ in range(runs):
    t0, c0 = time.perf_counter(), _children_cpu()
    subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True)
    walls.append(round(time.perf_counter() - t0, 3))
    cpus.append(round(_children_cpu() - c0, 3))
  return walls, cpus


def cpu_load() -> float | None:
  return os.getloadavg()[0] if hasattr(os, "getloadavg") else None


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--workdir", help="a trained groove_4bar run (default: random init)")
  parser.add_argument("--repeats", type=int, default=50)
  parser.add_argument("--cli_runs", type=int, default=4, help="first run + warm runs")
  parser.add_argument("--output", default=str(ROOT / "bench/results/generate.json"))
  args = parser.parse_args()
  inference.enable_compilation_cache()
  with tempfile.TemporaryDirectory() as tmp:
    workdir = args.workdir
    if workdir:
      model = inference.MusicVAEModel.from_workdir(workdir)
    else:
      cfg = config_lib.load("groove_4bar")
      model = inference.MusicVAEModel.init_random(cfg, seed=0)
      workdir = str(model.save(pathlib.Path(tmp) / "groove_4bar"))
    decode = time_decode(model, args.repeats)
    print("decode:", decode, flush=True)
    load_before = cpu_load()
    with_png = time_cli(workdir, tmp + "/out", args.cli_runs, png=True)
    no_png = time_cli(workdir, tmp + "/out", args.cli_runs, png=False)
  cli = {"command": "python -m flax_musicvae.generate --mode=sample --num_outputs=1",
         "with_png_wall_s": with_png[0], "with_png_cpu_s": with_png[1],
         "no_png_wall_s": no_png[0], "no_png_cpu_s": no_png[1],
         "warm_with_png_median_s": statistics.median(with_png[0][1:]),
         "warm_no_png_median_s": statistics.median(no_png[0][1:]),
         "note": "runs after the first are warm (XLA, export and parameter caches filled); "
                 "CPU = user + system of the subprocess",
         "magenta_reference_s": 7.2}
  print("cli:", cli)
  result = {"config": model.config.name, "z_size": model.z_size, "steps": model.length,
            "trained_workdir": args.workdir, "batch_size": 1, "decode": decode, "cli": cli,
            "platform": platform.platform(), "cpu_count": os.cpu_count(),
            "load_average_1min": [load_before, cpu_load()],
            "jax": jax.__version__, "backend": jax.default_backend(),
            "date": time.strftime("%Y-%m-%d %H:%M:%S")}
  pathlib.Path(args.output).parent.mkdir(parents=True, exist_ok=True)
  pathlib.Path(args.output).write_text(json.dumps(result, indent=2) + "\n")
  print(f"wrote {args.output}")


if __name__ == "__main__":
  main()
