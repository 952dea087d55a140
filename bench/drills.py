r"""Run-directory drills (issue 13): each one done as a user would, through the CLIs.

  python bench/drills.py                      # all drills -> bench/results/drills.json
  python bench/drills.py --only=signals_tiny --signals=10

Every drill trains a tiny groove_4bar (16 units, batch 8) on the Groove fixtures, except
``signals_default``, which times signal -> exit for the default groove_4bar config on the
real dataset (``--default_batch_size``; skipped without ``../shared``).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tarfile
import tempfile
import textwrap
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "groove"
SHARED_GROOVE = ROOT.parent / "shared" / "data" / "groove-v1.0.0-midionly"
GOLDEN = ROOT.parent / "shared" / "reference" / "golden"

TINY_CONFIG = textwrap.dedent("""
    from flax_musicvae import config_lib

    def get_config():
      c = config_lib.tiny(config_lib.groove_config("groovae_4bar", split_bars=4), rnn=16, z=8)
      c.data.path = {data!r}
      c.data.cache_dir = {cache!r}
      c.train.update(batch_size=8, num_train_steps=1_000_000, log_every_steps=1,
                     eval_every_steps=1_000_000, checkpoint_every_steps=1_000_000)
      return c
""")


class Drills:
  """Runs the CLIs in a scratch folder with a shared JAX compilation cache."""

  def __init__(self, scratch: pathlib.Path):
    self.scratch = scratch
    self.env = dict(os.environ, JAX_PLATFORMS="cpu",
                    JAX_COMPILATION_CACHE_DIR=str(scratch / "jax_cache"),
                    JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")
    self.config = scratch / "tiny_groove.py"
    self.config.write_text(TINY_CONFIG.format(data=str(FIXTURES), cache=str(scratch / "cache")))

  def cmd(self, module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]

  def train_cmd(self, workdir: pathlib.Path, *overrides: str, config=None) -> list[str]:
    return self.cmd("flax_musicvae.main", f"--config={config or self.config}", *overrides,
                    f"--workdir={workdir}")

  def run(self, command: list[str], cwd=ROOT, timeout=900) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=cwd, env=self.env, capture_output=True, text=True,
                          timeout=timeout)

  def interrupt(self, command: list[str], delay: float, signum: int, hang_s: float = 120,
                after_step_of: pathlib.Path | None = None) -> dict:
    """Starts ``command``, sends ``signum`` ``delay`` s later (counted from its first new
    step in ``after_step_of``'s metrics when given); exit code and seconds to exit."""
    logged = len(_logged_steps(after_step_of)) if after_step_of else 0
    proc = subprocess.Popen(command, cwd=ROOT, env=self.env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    while after_step_of and proc.poll() is None and (
        len(_logged_steps(after_step_of)) <= logged):
      time.sleep(0.05)
    time.sleep(delay)
    sent = time.monotonic()
    proc.send_signal(signum)
    try:
      out, err = proc.communicate(timeout=hang_s)
    except subprocess.TimeoutExpired:
      proc.kill()
      out, err = proc.communicate()
      err += f"\n<drill: no exit {hang_s} s after the signal; killed>"
    return {"signal": signal.Signals(signum).name, "delay_s": round(delay, 2),
            "exit_code": proc.returncode, "exit_s": round(time.monotonic() - sent, 2),
            "stdout": out, "stderr": err}


def _steps(workdir: pathlib.Path) -> list[int]:
  path = workdir / "checkpoints"
  return sorted(int(p.name) for p in path.iterdir() if p.name.isdigit()) if path.exists() else []


def _logged_steps(workdir: pathlib.Path) -> list[int]:
  path = workdir / "metrics.jsonl"
  lines = path.read_text().splitlines() if path.exists() else []
  return [json.loads(l)["step"] for l in lines if json.loads(l)["split"] == "train"]


def _digests(workdir: pathlib.Path, step: int) -> dict:
  from flax_musicvae import workdir as workdir_lib  # pylint: disable=import-outside-toplevel
  with workdir_lib.Checkpoints(workdir / "checkpoints") as ckpts:
    return ckpts.digests(step)


def signal_drill(d: Drills, signals: int, seed: int = 0, delays=(0.0, 3.0)) -> dict:
  """SIGTERM/SIGINT at random moments; then resume and compare with a straight run.

  After each signal: the exit code is 128 + signal and the newest checkpoint is the last
  step the run completed (every step is logged: ``log_every_steps=1``). Finally the
  interrupted run is finished at 5 steps past its last checkpoint and its checkpoint
  (params, optimiser state, rng) must equal, by checksum, that of an uninterrupted run.
  """
  rng = random.Random(seed)
  run = d.scratch / f"signals_{seed}"
  tries = []
  for i in range(signals):
    signum = (signal.SIGTERM, signal.SIGINT)[i % 2]
    before = _steps(run)
    # Every third signal at a random moment from the start (imports, data, compiling),
    # the others at a random moment after training started.
    in_training = i % 3 != 2
    result = d.interrupt(d.train_cmd(run), rng.uniform(*(delays if in_training else
                                                            (0.2, 6.0))),
                         signum, after_step_of=run if in_training else None)
    result["phase"] = "training" if in_training else "any"
    logged = _logged_steps(run)
    last_completed = max(logged + before, default=0)
    result.update(
        steps=f"{max(before, default=0)} -> {last_completed}",
        exit_code_ok=result["exit_code"] == 128 + signum,
        checkpoint_at_last_step=(last_completed == 0 and not _steps(run)) or
        (_steps(run) and max(_steps(run)) == last_completed))
    if not (result["exit_code_ok"] and result["checkpoint_at_last_step"]):
      result["stderr_tail"] = result["stderr"][-2000:]
    del result["stdout"], result["stderr"]
    tries.append(result)
  final = max(_steps(run), default=0) + 5
  resumed = d.run(d.train_cmd(run, f"--config.train.num_train_steps={final}"))
  straight = d.scratch / f"straight_{seed}"
  reference = d.run(d.train_cmd(straight, f"--config.train.num_train_steps={final}"))
  assert resumed.returncode == 0 and reference.returncode == 0, (resumed.stderr[-3000:],
                                                                 reference.stderr[-3000:])
  exits = [t["exit_s"] for t in tries]
  return {"signals": len(tries), "tries": tries,
          "all_exit_codes_128_plus_signal": all(t["exit_code_ok"] for t in tries),
          "all_checkpoints_at_last_completed_step": all(t["checkpoint_at_last_step"]
                                                        for t in tries),
          "final_step": final,
          "resume_bit_identical": _digests(run, final) == _digests(straight, final),
          "exit_s_median": statistics.median(exits), "exit_s_max": max(exits)}


def signals_default(d: Drills, batch_size: int, delay: float) -> dict:
  """Signal -> exit seconds for configs/groove_4bar.py on the real Groove data."""
  if not (SHARED_GROOVE / "groove" / "info.csv").exists():
    return {"skipped": f"no Groove dataset at {SHARED_GROOVE}"}
  out = {"config": "configs/groove_4bar.py", "batch_size": batch_size, "tries": []}
  run = d.scratch / "default"
  for signum in (signal.SIGTERM, signal.SIGINT):
    r = d.interrupt(d.train_cmd(run, f"--config.data.path={SHARED_GROOVE}",
                                f"--config.train.batch_size={batch_size}",
                                config=ROOT / "configs" / "groove_4bar.py"), delay, signum)
    out["tries"].append({k: r[k] for k in ("signal", "delay_s", "exit_code", "exit_s")} |
                        {"checkpoints": _steps(run), "stderr_tail": r["stderr"][-300:]})
  return out


def divergence(d: Drills) -> dict:
  run = d.scratch / "diverge"
  r = d.run(d.train_cmd(run, "--config.train.learning_rate=1e6",
                        "--config.train.num_train_steps=200",
                        "--config.train.checkpoint_every_steps=5"))
  from flax_musicvae import workdir as workdir_lib  # pylint: disable=import-outside-toplevel
  sample = d.run(d.cmd("flax_musicvae.generate", f"--workdir={run}", "--mode=sample",
                       "--no-png", f"--output_dir={d.scratch / 'diverge_out'}"))
  bad = []
  for step in _steps(run):
    try:
      workdir_lib.load_params(run / "checkpoints" / str(step),
                              workdir_lib.abstract_params(workdir_lib.load_config(run)))
    except workdir_lib.WorkdirError as e:
      bad.append(f"{step}: {e}")
  return {"exit_code": r.returncode, "error_lines": _errors(r.stderr),
          "checkpoints": _steps(run), "non_finite_checkpoints": bad,
          "generate_exit_code": sample.returncode}


def _errors(stderr: str) -> list[str]:
  return [l for l in stderr.splitlines() if l.startswith("error: ")]


def _flip(folder: pathlib.Path, count: int = 64) -> str:
  data = max((p for p in folder.rglob("*") if p.is_file() and "d" in p.parent.name),
             key=lambda p: p.stat().st_size)
  raw = bytearray(data.read_bytes())
  for i in random.Random(0).sample(range(len(raw)), count):
    raw[i] ^= 0xFF
  data.write_bytes(bytes(raw))
  return str(data.relative_to(folder))


def corrupt_checkpoints(d: Drills) -> dict:
  """Newest checkpoint damaged three ways; four older good ones are there."""
  out = {}
  for damage in ("flip_64_bytes", "truncate", "delete_file"):
    run = d.scratch / f"corrupt_{damage}"
    d.run(d.train_cmd(run, "--config.train.num_train_steps=10",
                      "--config.train.checkpoint_every_steps=2",
                      "--config.train.checkpoints_to_keep=5"))
    newest = run / "checkpoints" / str(max(_steps(run))) / "params"
    files = sorted(p for p in newest.rglob("*") if p.is_file())
    if damage == "flip_64_bytes":
      _flip(newest)
    elif damage == "truncate":
      biggest = max(files, key=lambda p: p.stat().st_size)
      biggest.write_bytes(biggest.read_bytes()[:len(biggest.read_bytes()) // 2])
    else:
      (newest / "manifest.ocdbt").unlink()
    gen = d.run(d.cmd("flax_musicvae.generate", f"--workdir={run}", "--mode=sample",
                      "--no-png", f"--output_dir={d.scratch / ('gen_' + damage)}"))
    r = d.run(d.train_cmd(run, "--config.train.num_train_steps=12",
                          "--config.train.checkpoint_every_steps=2",
                          "--config.train.checkpoints_to_keep=5"))
    out[damage] = {"resume_exit_code": r.returncode, "generate_exit_code": gen.returncode,
                   "warnings": [l[-300:] for l in r.stderr.splitlines() if "moved to" in l],
                   "rejected": sorted(p.name for p in (run / "rejected_checkpoints").iterdir())
                   if (run / "rejected_checkpoints").exists() else [],
                   "checkpoints_after": _steps(run)}
  return out


def two_trainers(d: Drills) -> dict:
  run = d.scratch / "two"
  first = subprocess.Popen(d.train_cmd(run), cwd=ROOT, env=d.env, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
  while not (run / "lock").exists():
    time.sleep(0.2)
  second = d.run(d.train_cmd(run))
  first.send_signal(signal.SIGTERM)
  first.communicate(timeout=600)
  metrics = _logged_steps(run)
  return {"second_exit_code": second.returncode, "second_error": _errors(second.stderr),
          "first_pid": first.pid, "first_exit_code": first.returncode,
          "metrics_lines_unique": len(metrics) == len(set(metrics))}


def disk_full(d: Drills) -> dict:
  """A 1 MiB tmpfs as the workdir (needs root and mount); skipped otherwise."""
  mount = d.scratch / "small_disk"
  mount.mkdir()
  m = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)],
                     capture_output=True, text=True)
  if m.returncode:
    return {"skipped": f"cannot mount a small tmpfs: {m.stderr.strip()}"}
  try:
    run = mount / "run"
    r = d.run(d.train_cmd(run, "--config.train.num_train_steps=400",
                          "--config.train.checkpoint_every_steps=2",
                          "--config.train.checkpoints_to_keep=1000"))
    leftovers = [p.name for p in (run / "checkpoints").iterdir() if "tmp" in p.name]
    saved_lines = [l for l in r.stdout.splitlines() if "saved" in l]
    return {"exit_code": r.returncode, "error_lines": _errors(r.stderr),
            "checkpoints": len(_steps(run)), "tmp_leftovers": leftovers,
            "last_saved_line": saved_lines[-1] if saved_lines else None,
            "last_checkpoint": max(_steps(run), default=None)}
  finally:
    subprocess.run(["umount", str(mount)], check=False)


def bad_data(d: Drills) -> dict:
  """The Groove fixtures with broken files in place of some listed ones."""
  root = d.scratch / "bad_groove"
  shutil.copytree(FIXTURES, root)
  import csv  # pylint: disable=import-outside-toplevel
  with open(root / "info.csv", newline="") as f:
    rows = [r for r in csv.DictReader(f) if r["split"] == "train"]
  damage = {}
  for how, row in zip(("truncated", "random_bytes", "directory", "broken_link", "empty"),
                      rows):
    path = root / row["midi_filename"]
    if how == "truncated":
      path.write_bytes(path.read_bytes()[:200])
    elif how == "random_bytes":
      path.write_bytes(os.urandom(3000))
    elif how == "directory":
      path.unlink()
      path.mkdir()
    elif how == "broken_link":
      path.unlink()
      path.symlink_to(root / "nowhere.mid")
    else:
      path.write_bytes(b"")
    damage[row["midi_filename"]] = how
  run = d.scratch / "bad_data_run"
  r = d.run(d.train_cmd(run, f"--config.data.path={root}",
                        f"--config.data.cache_dir={d.scratch / 'bad_cache'}",
                        "--config.train.num_train_steps=2"))
  report = json.loads((run / "data_report.json").read_text()) if (
      run / "data_report.json").exists() else {}
  listed = {s["file"]: s["reason"] for s in report.get("train", {}).get("skipped", [])}
  return {"exit_code": r.returncode, "damaged": damage,
          "reported": {f: listed.get(f) for f in damage},
          "stdout_data_lines": [l for l in r.stdout.splitlines() if l.startswith("data ")]}


def user_errors(d: Drills) -> dict:
  run = d.scratch / "user"
  random_tar = d.scratch / "random.tar"
  random_tar.write_bytes(random.Random(1).randbytes(5000))
  cases = {
      "unknown config file": d.cmd("flax_musicvae.main", "--config=configs/nope.py",
                                   f"--workdir={run}a"),
      "batch_size=0": d.train_cmd(run / "b", "--config.train.batch_size=0"),
      "batch_size=-8": d.train_cmd(run / "c", "--config.train.batch_size=-8"),
      "unknown key": d.train_cmd(run / "c2", "--config.train.batchsize=8"),
      "eval on an empty workdir": d.cmd("flax_musicvae.main", f"--workdir={run / 'd'}",
                                        "--mode=eval"),
      "random bytes .tar": d.cmd("flax_musicvae.import_checkpoint",
                                 "--config=configs/groove_4bar.py", f"--checkpoint={random_tar}",
                                 f"--workdir={run / 'e'}"),
      "convert_dir on a missing folder": d.cmd("pipelines.convert_dir",
                                               f"--input_dir={run / 'nope'}",
                                               f"--output_file={run / 'x.tfrecord'}"),
  }
  if (GOLDEN / "cat-drums_2bar_small").exists():
    tar = d.scratch / "truncated.tar"
    with tarfile.open(tar, "w") as t:
      for suffix in (".index", ".data-00000-of-00001"):
        t.add(GOLDEN / "cat-drums_2bar_small" / f"model.ckpt{suffix}",
              arcname=f"model.ckpt{suffix}")
    tar.write_bytes(tar.read_bytes()[:len(tar.read_bytes()) // 2])
    cases["truncated .tar"] = d.cmd("flax_musicvae.import_checkpoint",
                                    "--config=configs/cat_drums_2bar_small.py",
                                    f"--checkpoint={tar}", f"--workdir={run / 'f'}")
  out = {}
  for name, command in cases.items():
    r = d.run(command)
    out[name] = {"exit_code": r.returncode, "stderr_lines": len(r.stderr.splitlines()),
                 "traceback": "Traceback" in r.stderr, "error": _errors(r.stderr)}
  return out


def kill9_metrics(d: Drills) -> dict:
  run = d.scratch / "kill9"
  first = subprocess.Popen(d.train_cmd(run, "--config.train.checkpoint_every_steps=50"),
                           cwd=ROOT, env=d.env, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
  while max(_steps(run), default=0) < 100:
    time.sleep(0.2)
  time.sleep(0.5)
  first.kill()
  first.communicate()
  killed_at = max(_logged_steps(run))
  final = killed_at + 10
  r = d.run(d.train_cmd(run, f"--config.train.num_train_steps={final}",
                        "--config.train.checkpoint_every_steps=50"))
  steps = _logged_steps(run)
  return {"killed_after_logging_step": killed_at, "resume_exit_code": r.returncode,
          "each_step_once": steps == list(range(1, final + 1)),
          "tensorboard_files": sorted(p.name for p in (run / "tensorboard" / "train").iterdir())}


def workdir_only_and_paths(d: Drills) -> dict:
  """Size overrides, then eval/export/generate with --workdir alone, from another cwd,
  with a relative data path; a differing --config is refused."""
  cwd = d.scratch / "elsewhere"
  (cwd / "data").mkdir(parents=True)
  shutil.copytree(FIXTURES, cwd / "data" / "groove")
  run = d.scratch / "sized"
  train = d.run(d.train_cmd(run, "--config.data.path=data/groove",
                            "--config.model.enc_rnn_size=(32,)",
                            "--config.train.num_train_steps=3"), cwd=cwd)
  out = {"train_relative_data_path_exit_code": train.returncode}
  for name, command in {
      "eval": d.cmd("flax_musicvae.main", f"--workdir={run}", "--mode=eval"),
      "resume": d.cmd("flax_musicvae.main", f"--workdir={run}"),
      "tf1_export": d.cmd("flax_musicvae.import_checkpoint", f"--workdir={run}",
                          f"--tf_checkpoint={d.scratch / 'tf1' / 'model.ckpt'}"),
      "generate": d.cmd("flax_musicvae.generate", f"--workdir={run}", "--mode=sample",
                        "--no-png", f"--output_dir={d.scratch / 'gen_sized'}"),
      "other_config_refused": d.train_cmd(run),
  }.items():
    r = d.run(command)
    out[name] = {"exit_code": r.returncode, "error": _errors(r.stderr)}
  return out


def log_noise(d: Drills) -> dict:
  r = d.run(d.train_cmd(d.scratch / "quiet", "--config.train.num_train_steps=4",
                        "--config.train.checkpoint_every_steps=2"))
  return {"exit_code": r.returncode, "stderr_lines": r.stderr.splitlines(),
          "stdout_lines": r.stdout.splitlines()}


DRILLS = ("signals_tiny", "signals_default", "divergence", "corrupt_checkpoints",
          "two_trainers", "disk_full", "bad_data", "user_errors", "kill9_metrics",
          "workdir_only_and_paths", "log_noise")


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--only", nargs="*", default=list(DRILLS), choices=DRILLS)
  parser.add_argument("--signals", type=int, default=20)
  parser.add_argument("--default_batch_size", type=int, default=512)
  parser.add_argument("--default_signal_delay", type=float, default=150.0,
                      help="seconds after start (loading, compiling, first steps)")
  parser.add_argument("--output", default=str(ROOT / "bench" / "results" / "drills.json"))
  args = parser.parse_args()
  results = json.loads(pathlib.Path(args.output).read_text()) if os.path.exists(
      args.output) else {}
  with tempfile.TemporaryDirectory() as scratch:
    d = Drills(pathlib.Path(scratch))
    for name in args.only:
      start = time.monotonic()
      if name == "signals_tiny":
        result = signal_drill(d, args.signals)
      elif name == "signals_default":
        result = signals_default(d, args.default_batch_size, args.default_signal_delay)
      else:
        result = globals()[name](d)
      result["drill_seconds"] = round(time.monotonic() - start, 1)
      results[name] = result
      print(name, json.dumps(result)[:600], flush=True)
      pathlib.Path(args.output).write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
  main()
