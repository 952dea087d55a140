"""Multi-host training for real: two local ``jax.distributed`` processes (CPU, gloo
collectives, one device each) run the training loop on one shared run directory and match
one process with two devices on the same global batch, in loss, evaluation and parameters;
each process reads only its own rows of every global batch."""

import json
import os
import shlex
import socket
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

from flax_musicvae import input_pipeline
from flax_musicvae import workdir as workdir_lib
from tests.conftest import ROOT

STEPS = 4
BATCH = 8  # tiny_config's global batch

# Trains tiny_config on groove_like data through train.train_and_evaluate (the loop users
# run: prefetch, sharding, eval, orbax checkpoints, metrics from process 0) and records the
# example indices this process took from the training arrays.
_WORKER = textwrap.dedent("""
    import json, sys
    import jax
    process_id, num_processes, port, workdir, out = sys.argv[1:]
    num_processes = int(num_processes)
    if num_processes > 1:
      jax.config.update("jax_cpu_collectives_implementation", "gloo")
      jax.distributed.initialize(f"127.0.0.1:{port}", num_processes=num_processes,
                                 process_id=int(process_id), initialization_timeout=120)
    import numpy as np
    from flax_musicvae import train
    from tests.test_train import groove_like, tiny_config

    class Recorded(np.ndarray):
      reads = []
      def __getitem__(self, index):
        if isinstance(index, np.ndarray):
          Recorded.reads.append(index.tolist())
        return np.asarray(super().__getitem__(index))

    data = groove_like(24, seed=0)
    data["lengths"] = data["lengths"].view(Recorded)
    train.train_and_evaluate(tiny_config(%(steps)d, log_every_steps=1), workdir,
                             train_data=data, eval_data=groove_like(%(batch)d, seed=1))
    with open(out, "w") as f:
      json.dump({"process": [jax.process_index(), jax.process_count()],
                 "devices": [jax.local_device_count(), jax.device_count()],
                 "reads": Recorded.reads[:%(steps)d]}, f)
""" % {"steps": STEPS, "batch": BATCH})


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def launch(process_id: int, num_processes: int, port: int, devices: int, workdir, out):
  flags = (f"--xla_force_host_platform_device_count={devices} "
           "--xla_backend_optimization_level=0")  # halves compile time, same for every run
  env = dict(os.environ, XLA_FLAGS=flags, JAX_PLATFORMS="cpu")
  return subprocess.Popen(
      [sys.executable, "-c", _WORKER, str(process_id), str(num_processes), str(port),
       str(workdir), str(out)], cwd=ROOT, env=env, stdout=subprocess.PIPE,
      stderr=subprocess.STDOUT, text=True)


def run_all(procs) -> None:
  try:
    outputs = [p.communicate(timeout=300)[0] for p in procs]
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
        p.wait()
  for p, output in zip(procs, outputs):
    assert p.returncode == 0, output[-4000:]


def train_losses(workdir) -> list[float]:
  return [m["loss"] for m in workdir_lib.read_metrics(workdir) if m["split"] == "train"]


def test_two_processes_match_one_process(tmp_path):
  port = free_port()
  multi, single = tmp_path / "two_processes", tmp_path / "one_process"
  outs = [tmp_path / f"process{i}.json" for i in range(2)]
  # All three start together (two cores here): the 2-process pair and the reference.
  run_all([launch(i, 2, port, 1, multi, outs[i]) for i in range(2)]
          + [launch(0, 1, 0, 2, single, tmp_path / "single.json")])
  workers = [json.loads(o.read_text()) for o in outs]
  reference = json.loads((tmp_path / "single.json").read_text())

  assert [w["process"] for w in workers] == [[0, 2], [1, 2]]
  assert [w["devices"] for w in workers] == [[1, 2], [1, 2]]
  assert reference["process"] == [0, 1] and reference["devices"] == [2, 2]

  # Each process read its half of every global batch, and nothing else.
  for step, batch in enumerate(reference["reads"]):
    assert len(batch) == BATCH and len(set(batch)) == BATCH
    assert workers[0]["reads"][step] == batch[:BATCH // 2]
    assert workers[1]["reads"][step] == batch[BATCH // 2:]

  # Same losses step by step (process 0 alone wrote the metrics), same evaluation, same
  # parameters in the checkpoint both processes saved together.
  losses = train_losses(multi)
  assert len(losses) == STEPS and losses[0] != losses[-1]
  np.testing.assert_allclose(losses, train_losses(single), rtol=1e-6)
  (eval_multi,) = [m for m in workdir_lib.read_metrics(multi) if m["split"] == "eval"]
  (eval_single,) = [m for m in workdir_lib.read_metrics(single) if m["split"] == "eval"]
  np.testing.assert_allclose(eval_multi["loss"], eval_single["loss"], rtol=1e-6)
  _, params_multi, step_multi = workdir_lib.load(multi)
  _, params_single, step_single = workdir_lib.load(single)
  assert step_multi == step_single == STEPS
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7),
               params_multi, params_single)


def test_remote_data_path_is_copied_once_per_host(tmp_path, fake_gcs, capsys):
  """data.path on gs:// (a fake, in-memory bucket): the file or folder is copied to the
  host's data cache once, read from there, and copied again when the remote file changes."""
  fs = fake_gcs
  fs.pipe("gs://bucket/data/groove.zip", b"zip bytes")
  fs.pipe("gs://bucket/data/folk/a.tfrecord", b"a")
  fs.pipe("gs://bucket/data/folk/sub/b.tfrecord", b"bb")
  copy = input_pipeline.local_copy("gs://bucket/data/groove.zip", tmp_path)
  assert copy.read_bytes() == b"zip bytes" and copy.name == "groove.zip"
  assert "copying gs://bucket/data/groove.zip" in capsys.readouterr().out
  assert input_pipeline.local_copy("gs://bucket/data/groove.zip", tmp_path) == copy
  assert capsys.readouterr().out == ""  # already here: not copied again
  fs.pipe("gs://bucket/data/groove.zip", b"new zip bytes")
  assert input_pipeline.local_copy("gs://bucket/data/groove.zip", tmp_path).read_bytes() == (
      b"new zip bytes")
  folder = input_pipeline.local_copy("gs://bucket/data/folk", tmp_path)
  assert sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()) == [
      "a.tfrecord", "sub/b.tfrecord"]
  assert (folder / "sub" / "b.tfrecord").read_bytes() == b"bb"
  assert not list(tmp_path.rglob("*.tmp"))
  with pytest.raises(FileNotFoundError, match="data.path gs://bucket/nothing not found"):
    input_pipeline.local_copy("gs://bucket/nothing", tmp_path)
  with pytest.raises(ValueError, match="data.cache_dir must be a local folder"):
    input_pipeline.resolve_path("gs://bucket/cache")


# ----------------------------------------------------------------------------- launch script

SCRIPT = ROOT / "launch" / "multihost.sh"


def multihost(*args, **env):
  return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True,
                        env=dict(os.environ, **env), timeout=30)


def test_multihost_usage():
  shown = multihost("--help")
  assert shown.returncode == 0 and shown.stderr == ""
  assert shown.stdout.startswith("Multi-host data-parallel training")
  assert "set -euo" not in shown.stdout and "#" not in shown.stdout
  for mode in ("tpu-install TPU_NAME ZONE", "tpu TPU_NAME ZONE WORKDIR", "slurm WORKDIR",
               "manual COORDINATOR_HOST:PORT NUM_PROCESSES PROCESS_ID WORKDIR"):
    assert f"\n  {mode}" in shown.stdout
  bare = multihost()
  assert bare.returncode == 2 and bare.stdout == "" and bare.stderr == shown.stdout
  for args, message in ((["tpu", "name"], "error: tpu needs TPU_NAME ZONE WORKDIR"),
                        (["pods"], "error: unknown mode 'pods'")):
    wrong = multihost(*args)
    assert wrong.returncode == 2 and wrong.stderr.splitlines()[0].startswith(message)


def dry_run(*args, **env) -> list[list[str]]:
  proc = multihost("--dry-run", *args, **env)
  assert proc.returncode == 0, proc.stderr
  return [shlex.split(line) for line in proc.stdout.splitlines()]


def test_multihost_tpu_installs_on_every_worker_then_trains():
  install, train_cmd = dry_run("tpu", "my-v4-32", "us-central2-b", "gs://bucket/runs/g4",
                               "--config.train.batch_size=1024", "--config.name=a b",
                               REPO="https://example.org/flax-musicvae.git")
  ssh = ["gcloud", "compute", "tpus", "tpu-vm", "ssh", "my-v4-32", "--zone",
         "us-central2-b", "--worker=all", "--command"]
  assert install[:-1] == ssh and train_cmd[:-1] == ssh
  remote_install = shlex.split(install[-1].replace(";", " ; "))
  assert "git clone -q https://example.org/flax-musicvae.git ~/flax-musicvae" in install[-1]
  assert remote_install[remote_install.index("pip"):][:6] == [
      "pip", "install", "-q", "-e", "~/flax-musicvae", "jax[tpu]==0.10.2"]
  remote_train = shlex.split(train_cmd[-1])
  assert remote_train[:3] == ["cd", "~/flax-musicvae", "&&"]
  assert remote_train[3:] == [
      "python", "-m", "flax_musicvae.main", "--distributed",
      "--config=configs/groove_4bar.py", "--workdir=gs://bucket/runs/g4",
      "--config.train.batch_size=1024", "--config.name=a b"]
  # Without REPO this checkout travels (committed files), and INSTALL=0 only trains.
  archive, copy, unpack = dry_run("tpu-install", "t", "z")
  assert archive[:3] == ["git", "-C", str(ROOT / "launch" / "..")] and archive[-1] == "HEAD"
  assert copy[:5] == ["gcloud", "compute", "tpus", "tpu-vm", "scp"] and "--worker=all" in copy
  assert copy[5] == archive[archive.index("-o") + 1]
  assert "tar -xzf ~/flax-musicvae.tar.gz" in unpack[-1] and "pip install" in unpack[-1]
  (only_train,) = dry_run("tpu", "t", "z", "/mnt/runs/x", INSTALL="0")
  assert "flax_musicvae.main --distributed" in only_train[-1]


def test_multihost_manual_and_slurm_commands():
  (manual,) = dry_run("manual", "10.0.0.2:1234", "4", "3", "/shared/runs/x",
                      "--config.train.batch_size=64", CONFIG="configs/groove_2bar.py",
                      PYTHON="python3")
  assert manual == ["python3", "-m", "flax_musicvae.main", "--distributed",
                    "--coordinator_address=10.0.0.2:1234", "--num_processes=4",
                    "--process_id=3", "--config=configs/groove_2bar.py",
                    "--workdir=/shared/runs/x", "--config.train.batch_size=64"]
  (slurm,) = dry_run("slurm", "/shared/runs/x", DRY_RUN="1")
  assert slurm == ["srun", "--ntasks-per-node=1", "python", "-m", "flax_musicvae.main",
                   "--distributed", "--config=configs/groove_4bar.py",
                   "--workdir=/shared/runs/x"]
