"""groove_4bar training throughput side by side with the peers, in one invocation.

Runs, one process after another on this machine: this project (``bench_train.py``) at each
batch size and precision, the PyTorch port of the same model (``../shared/peers/torch``,
eager fp32 and ``torch.autocast`` bf16) and, when installed, the original Magenta
(``../shared/peers/bench_magenta_train.sh``, batch 64). Each figure is examples/s after
warm-up on the real Groove train windows. The results file records the ratios, the load
average around every run and whether the CPU has native bf16 matmul units (AMX /
AVX512-BF16): without them bf16 is emulated and slower than float32, for every framework.

Started with ``FLAX_MUSICVAE_HUGE_PAGES=0``, no run gets the huge-page malloc that the
training program sets up (``flax_musicvae/hugepages.py``); otherwise every run does.

Peers install outside the repository (``../shared/peers/README.md``); a missing peer is
reported and skipped. Benchmark only an idle machine.

  python bench/bench_vs_peers.py [--steps 20] [--batch_sizes 64,512]
      [--dtypes float32,bfloat16] [--magenta_steps 60] [--output PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import re
import subprocess
import sys
import tempfile

from flax_musicvae import hugepages

ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED = pathlib.Path(os.environ.get("FLAX_MUSICVAE_SHARED", ROOT.parent / "shared"))
PEERS = SHARED / "peers"
PEERS_HOME = pathlib.Path(os.environ.get("PEERS_HOME", pathlib.Path.home() / ".cache" /
                                         "musicvae-peers"))
TORCH_MODE = {"float32": "eager", "bfloat16": "eager_bf16"}


def cpu_facts() -> dict:
  flags: set[str] = set()
  model = platform.processor()
  try:
    for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
      if line.startswith("flags") and not flags:
        flags = set(line.split(":", 1)[1].split())
      if line.startswith("model name"):
        model = line.split(":", 1)[1].strip()
  except OSError:
    pass
  native = sorted(flags & {"amx_bf16", "avx512_bf16"})
  return {"cpu": model, "cpu_count": os.cpu_count(), "native_bf16_matmul": native,
          "avx512f": "avx512f" in flags, "avx2": "avx2" in flags}


def run(cmd: list[str], env: dict | None = None) -> tuple[str, list[float], list[float]]:
  """Runs ``cmd``; returns its stdout and the load averages before and after."""
  before = list(os.getloadavg())
  print("$", " ".join(cmd), flush=True)
  proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
  after = list(os.getloadavg())
  if proc.returncode:
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
    raise RuntimeError(f"exit {proc.returncode}: {' | '.join(tail)}")
  return proc.stdout, before, after


def ours(batch: int, dtype: str, steps: int) -> dict:
  with tempfile.TemporaryDirectory() as tmp:
    out = pathlib.Path(tmp) / "r.json"
    _, before, after = run([sys.executable, str(ROOT / "bench" / "bench_train.py"),
                            "--batch_size", str(batch), "--compute_dtype", dtype,
                            "--steps", str(steps), "--output", str(out)])
    r = json.loads(out.read_text())
  return {"examples_per_second": r["examples_per_second"], "final_loss": r["final_loss"],
          "fraction_of_peak": r["fraction_of_peak"], "load_before": before,
          "load_after": after}


def torch_peer(batches: list[int], dtypes: list[str], steps: int, data: str) -> dict:
  python = PEERS_HOME / "torch" / "venv" / "bin" / "python"
  if not python.exists():
    raise RuntimeError(f"missing {python} (bash {PEERS}/torch/install.sh)")
  with tempfile.TemporaryDirectory() as tmp:
    out = pathlib.Path(tmp) / "r.json"
    _, before, after = run([str(python), str(PEERS / "torch" / "groovae_torch.py"),
                            "--steps", str(steps), "--warmup", "4",
                            "--batch_size", ",".join(map(str, batches)),
                            "--mode", ",".join(TORCH_MODE[d] for d in dtypes),
                            "--data", data, "--json", str(out)])
    r = json.loads(out.read_text())
  rows = {f"{row['mode']}_b{row['batch_size']}": row.get("examples_per_second")
          for row in r["results"]}
  return {"torch": r["torch"], "examples_per_second": rows, "load_before": before,
          "load_after": after}


def magenta_peer(steps: int) -> dict:
  stdout, before, after = run(["bash", str(PEERS / "bench_magenta_train.sh"), str(steps)],
                              env=dict(os.environ, BATCH="64"))
  mean = re.search(r"examples/s \(mean over steps [^)]*\): ([\d.]+)", stdout)
  median = re.search(r"examples/s \(median step\): ([\d.]+)", stdout)
  if not mean:
    raise RuntimeError(f"no examples/s line in: {stdout[-300:]}")
  return {"batch_size": 64, "steps": steps, "examples_per_second": float(mean.group(1)),
          "examples_per_second_median_step": float(median.group(1)) if median else None,
          "load_before": before, "load_after": after}


def groove_cache() -> str:
  """This project's cached Groove train windows (the peers train on the same arrays)."""
  caches = sorted((pathlib.Path.home() / ".cache" / "flax_musicvae").glob(
      "groove_train_4bar_*.npz"), key=lambda p: p.stat().st_mtime)
  if not caches:
    raise RuntimeError("no Groove train cache: run bench/bench_train.py once first")
  return str(caches[-1])


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--steps", type=int, default=20, help="timed steps per run")
  parser.add_argument("--batch_sizes", default="64,512")
  parser.add_argument("--dtypes", default="float32,bfloat16")
  parser.add_argument("--magenta_steps", type=int, default=60,
                      help="music_vae_train steps (first 5 untimed); 0 skips Magenta")
  parser.add_argument("--output", default=str(ROOT / "bench" / "results" /
                                              "train_vs_peers_cpu.json"))
  args = parser.parse_args()
  batches = [int(b) for b in args.batch_sizes.split(",")]
  dtypes = args.dtypes.split(",")

  result: dict = {"config": "groove_4bar", "machine": cpu_facts(), "ours": {}, "errors": {},
                  # every run (ours and the peers') inherits this process's environment
                  "glibc_tunables": os.environ.get("GLIBC_TUNABLES", "")}
  for dtype in dtypes:
    for batch in batches:
      result["ours"][f"{dtype}_b{batch}"] = ours(batch, dtype, args.steps)
      print(f"this project {dtype} b{batch}: "
            f"{result['ours'][f'{dtype}_b{batch}']['examples_per_second']:.1f} ex/s", flush=True)
  try:
    result["torch"] = torch_peer(batches, dtypes, args.steps, groove_cache())
    print("pytorch:", result["torch"]["examples_per_second"], flush=True)
  except RuntimeError as e:
    result["errors"]["torch"] = str(e)
  if args.magenta_steps:
    try:
      result["magenta"] = magenta_peer(args.magenta_steps)
      print(f"magenta b64: {result['magenta']['examples_per_second']:.1f} ex/s", flush=True)
    except RuntimeError as e:
      result["errors"]["magenta"] = str(e)

  ratios = {}
  for key, r in result["ours"].items():
    dtype, batch = key.rsplit("_b", 1)
    peer = result.get("torch", {}).get("examples_per_second", {})
    for torch_dtype in dtypes:
      theirs = peer.get(f"{TORCH_MODE[torch_dtype]}_b{batch}")
      if theirs:
        ratios[f"ours_{key}/torch_{torch_dtype}_b{batch}"] = r["examples_per_second"] / theirs
    if "magenta" in result and batch == "64":
      ratios[f"ours_{key}/magenta_float32_b64"] = (r["examples_per_second"] /
                                                   result["magenta"]["examples_per_second"])
  result["ratios"] = ratios
  out = pathlib.Path(args.output)
  out.parent.mkdir(parents=True, exist_ok=True)
  out.write_text(json.dumps(result, indent=1) + "\n")
  print(json.dumps(ratios, indent=1))
  print("wrote", out)


if __name__ == "__main__":
  # Every run, the peers' too, gets the huge-page malloc the training program uses
  # (FLAX_MUSICVAE_HUGE_PAGES=0: nobody gets it).
  hugepages.reexec()
  main()
