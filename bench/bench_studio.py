"""Studio latency: from a Generate request to a playable clip, through the real server.

Starts ``python -m flax_musicvae.studio --model=groove_4bar --no_warm`` (no background
warm-up of the task models competing for the CPU) as a subprocess on a free localhost
port, waits until it serves, makes ``--warmup`` requests (the first compiles the
one-sample decoder), then times ``--repeats`` ``POST /api/generate`` requests for one
4-bar sample (a new seed each): the time until the answer's JSON is parsed, which holds
everything the page needs to play the clip (notes, tempo, length) and its MIDI. Reports
the median (target: under 300 ms), min, p90 and max, and the load average at the time,
since a busy shared machine inflates wall time. Writes bench/results/studio_latency.json.

  python bench/bench_studio.py [--model groove_4bar] [--repeats 20]
"""

import argparse
import datetime
import json
import os
import pathlib
import platform
import socket
import statistics
import subprocess
import sys
import time
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parents[1]
TARGET_MS = 300.0


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def start_server(model: str, port: int) -> tuple[subprocess.Popen, float]:
  """The studio process and the seconds it took to serve (the model loaded)."""
  t0 = time.perf_counter()
  proc = subprocess.Popen([sys.executable, "-m", "flax_musicvae.studio", f"--model={model}",
                           f"--port={port}", "--no_warm"], cwd=ROOT, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)
  for line in proc.stdout:
    if line.startswith("studio: http"):
      return proc, time.perf_counter() - t0
  raise RuntimeError(f"the studio exited with {proc.wait()} before serving")


def generate(url: str, seed: int) -> tuple[float, dict]:
  body = json.dumps({"n": 1, "temperature": 0.5, "seed": seed}).encode()
  request = urllib.request.Request(url + "/api/generate", body,
                                   {"Content-Type": "application/json"})
  t0 = time.perf_counter()
  with urllib.request.urlopen(request, timeout=120) as response:
    clip = json.loads(response.read())["clips"][0]
  return time.perf_counter() - t0, clip


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--model", default="groove_4bar")
  p.add_argument("--repeats", type=int, default=20)
  p.add_argument("--warmup", type=int, default=3)
  p.add_argument("--output", default=str(ROOT / "bench" / "results" / "studio_latency.json"))
  args = p.parse_args()
  port = free_port()
  load_before = os.getloadavg()
  proc, start_s = start_server(args.model, port)
  url = f"http://127.0.0.1:{port}"
  try:
    for i in range(args.warmup):
      generate(url, 10_000 + i)
    times, notes = [], []
    for i in range(args.repeats):
      seconds, clip = generate(url, i)
      assert clip["midi"] and clip["bars"] == 4, clip["bars"]
      times.append(1e3 * seconds)
      notes.append(len(clip["notes"]))
  finally:
    proc.terminate()
    proc.wait(10)
  times_sorted = sorted(times)
  median = statistics.median(times)
  result = {
      "what": "POST /api/generate {n: 1} to the parsed JSON clip (notes + MIDI), warm, "
              "through the real HTTP server (python -m flax_musicvae.studio)",
      "model": args.model, "repeats": args.repeats, "warmup_requests": args.warmup,
      "latency_ms_median": round(median, 1), "latency_ms_min": round(times_sorted[0], 1),
      "latency_ms_p90": round(times_sorted[int(0.9 * (len(times) - 1))], 1),
      "latency_ms_max": round(times_sorted[-1], 1),
      "target_ms": TARGET_MS, "meets_target": median < TARGET_MS,
      "notes_per_clip_median": statistics.median(notes),
      "server_start_to_serving_s": round(start_s, 2),
      "load_average_1_5_15_before": [round(x, 2) for x in load_before],
      "load_average_1_5_15_after": [round(x, 2) for x in os.getloadavg()],
      "niceness": os.nice(0), "cpu_count": os.cpu_count(), "machine": platform.processor() or platform.machine(),
      "python": platform.python_version(),
      "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
      "note": ("idle machine (1-minute load average under 1 before the run)"
               if load_before[0] < 1 else
               "measured while other jobs ran (see the load averages); re-run on an idle "
               "machine for the reference figure"),
  }
  out = pathlib.Path(args.output)
  out.parent.mkdir(parents=True, exist_ok=True)
  out.write_text(json.dumps(result, indent=2) + "\n")
  print(json.dumps(result, indent=2))
  print(f"wrote {out}")


if __name__ == "__main__":
  main()
