"""The run directory: config memory, lock, checkpoint checksums and fallback, non-finite
guard, metrics and TensorBoard events after resume, failed saves, non-local paths and
one-line CLI errors."""

import collections
import errno
import io
import json
import os
import subprocess
import sys

import jax.numpy as jnp
from matplotlib import image as mpl_image
import numpy as np
import orbax.checkpoint as ocp
import pytest

from flax_musicvae import train
from flax_musicvae import workdir as workdir_lib
from flax_musicvae.workdir import metrics as metrics_lib
from tests.conftest import FIXTURES, ROOT
from tests.test_train import EVAL, TRAIN, assert_trees_equal, compilation_cache  # noqa: F401
from tests.test_train import restored_state, tiny_config


def fit(config, workdir, train_data=TRAIN):
  return train.train_and_evaluate(config, workdir, train_data=train_data, eval_data=EVAL)


def steps_of(workdir, split="train"):
  return [json.loads(l)["step"] for l in (workdir / "metrics.jsonl").read_text().splitlines()
          if json.loads(l)["split"] == split]


def test_config_is_remembered_and_model_changes_refused(tmp_path):
  fit(tiny_config(2), tmp_path)
  stored = (tmp_path / "config.json").read_text()
  bigger = tiny_config(4)
  bigger.model.enc_rnn_size = (32,)
  with pytest.raises(workdir_lib.WorkdirError, match=r"model.enc_rnn_size: \[16\] -> \[32\]"):
    fit(bigger, tmp_path)
  assert (tmp_path / "config.json").read_text() == stored  # untouched by the refused run
  fit(tiny_config(3, log_every_steps=1), tmp_path)  # train settings may change
  assert json.loads((tmp_path / "config.json").read_text())["train"]["num_train_steps"] == 3
  fit(None, tmp_path)  # config.json alone resumes (already at its 3 steps)
  assert int(restored_state(tiny_config(3), tmp_path).step) == 3


def test_second_trainer_is_refused(tmp_path):
  with workdir_lib.lock(tmp_path):
    with pytest.raises(workdir_lib.WorkdirError, match=f"in use by PID {os.getpid()}"):
      fit(tiny_config(1), tmp_path)
  assert not (tmp_path / "checkpoints").exists()


def _largest_file(folder):
  return max((p for p in folder.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)


@pytest.mark.parametrize("damage", ["flip_bytes", "truncate", "delete_params"])
def test_damaged_newest_checkpoint_falls_back_to_an_older_one(tmp_path, damage):
  config = tiny_config(4, checkpoint_every_steps=2)
  straight = tmp_path / "straight"
  fit(config, straight)
  run = tmp_path / "run"
  fit(config, run)
  params_dir = run / "checkpoints" / "4" / "params"
  if damage == "flip_bytes":  # silent corruption: only the checksum can tell
    data = _largest_file(params_dir)
    raw = bytearray(data.read_bytes())
    raw[len(raw) // 2:len(raw) // 2 + 64] = bytes(b ^ 0xFF for b in raw[len(raw) // 2:][:64])
    data.write_bytes(bytes(raw))
  elif damage == "truncate":
    for p in params_dir.rglob("*"):
      if p.is_file():
        p.write_bytes(b"")
  else:
    for p in sorted(params_dir.rglob("*"), reverse=True):
      p.unlink() if p.is_file() else p.rmdir()
  # A reader skips the damaged step and reads step 2.
  _, step = workdir_lib.load_params(run, restored_state(config, straight).params)
  assert step == 2
  # The trainer moves it aside, resumes from step 2 and ends where the straight run did.
  fit(config, run)
  assert [p.name.split("-")[0] for p in (run / "rejected_checkpoints").iterdir()] == ["4"]
  assert_trees_equal(restored_state(config, run), restored_state(config, straight))


def test_no_usable_checkpoint_is_one_error(tmp_path):
  fit(tiny_config(2), tmp_path)
  for p in (tmp_path / "checkpoints" / "2" / "params").rglob("*"):
    if p.is_file():
      p.write_bytes(b"\0" * p.stat().st_size)
  with pytest.raises(workdir_lib.WorkdirError, match="no usable checkpoint"):
    fit(tiny_config(4), tmp_path)


def test_non_finite_steps_are_skipped_then_stop(tmp_path):
  poisoned = {k: v.copy() for k, v in TRAIN.items()}
  poisoned["inputs"][:] = np.nan
  config = tiny_config(30, checkpoint_every_steps=1, max_nonfinite_steps=3)
  with pytest.raises(train.NonFiniteError, match="not finite for 3 consecutive steps"):
    fit(config, tmp_path, train_data=poisoned)
  # Steps 1 and 2 were skipped (params unchanged) and saved; nothing non-finite was.
  saved = sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir())
  assert saved == [1, 2]
  initial = train._setup(config, TRAIN).state
  assert_trees_equal(restored_state(config, tmp_path).params, initial.params)


def test_non_finite_values_are_never_saved_nor_restored(tmp_path):
  params = {"w": jnp.array([1.0, np.nan])}
  with workdir_lib.Checkpoints(tmp_path / "checkpoints", writer=True) as ckpts:
    with pytest.raises(workdir_lib.SaveError, match="non-finite"):
      ckpts.save(workdir_lib.Checkpoint(1, params), tiny_config())
    assert ckpts.steps() == []
  with ocp.CheckpointManager(tmp_path / "checkpoints") as manager:  # written behind our back
    manager.save(1, args=ocp.args.Composite(params=ocp.args.StandardSave(params)))
  with pytest.raises(workdir_lib.WorkdirError, match="no usable checkpoint"):
    workdir_lib.load_params(tmp_path, params)


def test_metrics_hold_each_step_once_after_a_kill(tmp_path):
  config = tiny_config(6, log_every_steps=1, checkpoint_every_steps=2, eval_every_steps=2)
  fit(config, tmp_path)
  # As if killed after logging step 6 but before its checkpoint was written:
  for p in sorted((tmp_path / "checkpoints" / "6").rglob("*"), reverse=True):
    p.unlink() if p.is_file() else p.rmdir()
  (tmp_path / "checkpoints" / "6").rmdir()
  fit(config, tmp_path)
  assert steps_of(tmp_path) == [1, 2, 3, 4, 5, 6]
  assert steps_of(tmp_path, "eval") == [2, 4, 6]
  for split, steps in (("train", [1, 2, 3, 4, 5, 6]), ("eval", [2, 4, 6])):
    found = scalar_steps(tmp_path / "tensorboard" / split)
    assert found and all(s == steps for s in found.values()), found


def test_resume_puts_a_legacy_event_file_first(tmp_path):
  """A run's one event file from before tensorboardX is renamed on resume so that it is
  read before the new files: every step once, in order."""
  writer = workdir_lib.MetricWriter(tmp_path)
  for step in (1, 2, 3):
    writer.write("train", step, {"loss": float(step)})
  writer.close()
  logdir = tmp_path / "tensorboard" / "train"
  (old,) = workdir_lib.event_files(logdir)
  old.rename(logdir / metrics_lib.LEGACY_EVENTS_FILE)
  writer = workdir_lib.MetricWriter(tmp_path, resume_step=2)
  writer.write("train", 3, {"loss": 3.5})
  writer.close()
  files = workdir_lib.event_files(logdir)
  assert len(files) == 2 and files[0].name == metrics_lib.LEGACY_EVENTS_RENAMED
  assert scalar_steps(logdir) == {"loss": [1, 2, 3]}


def scalar_steps(logdir):
  """{tag: steps} of the scalars in ``logdir``'s event files, read in TensorBoard's order."""
  steps = collections.defaultdict(list)
  for file in workdir_lib.event_files(logdir):
    for event in workdir_lib.read_events(file):
      for value in event.summary.value:
        steps[value.tag].append(event.step)
  return steps


def test_tensorboard_events_hold_scalars_and_pngs(tmp_path):
  writer = workdir_lib.MetricWriter(tmp_path)
  writer.write("eval", 7, {"loss": 1.5, "free_running/accuracy": 0.25})
  pixels = np.zeros((3, 5, 4))  # 3 rows of 5 RGBA pixels, one of them red
  pixels[..., 3] = pixels[1, 2, 0] = 1
  png = io.BytesIO()
  mpl_image.imsave(png, pixels, format="png")
  writer.images("eval", 9, {"samples": png.getvalue()})
  writer.close()
  (file,) = workdir_lib.event_files(tmp_path / "tensorboard" / "eval")
  version, *scalars, images = workdir_lib.read_events(file)
  assert version.file_version == "brain.Event:2"
  assert {(e.step, v.tag, v.simple_value) for e in scalars for v in e.summary.value} == {
      (7, "loss", 1.5), (7, "free_running/accuracy", 0.25)}
  (image,) = images.summary.value
  assert (images.step, image.tag, image.image.height, image.image.width) == (9, "samples", 3, 5)
  decoded = mpl_image.imread(io.BytesIO(image.image.encoded_image_string), format="png")
  np.testing.assert_array_equal(decoded, pixels)


def test_failed_save_is_named_and_leaves_nothing(tmp_path, monkeypatch, capsys):
  leftover = tmp_path / "checkpoints" / "8.orbax-checkpoint-tmp-1234"
  leftover.mkdir(parents=True)
  real_save = ocp.CheckpointManager.save

  def disk_full(self, step, *args, **kwargs):
    if step == 2:
      (self.directory / f"{step}.orbax-checkpoint-tmp-99").mkdir()
      raise OSError(errno.ENOSPC, "No space left on device")
    return real_save(self, step, *args, **kwargs)

  monkeypatch.setattr(ocp.CheckpointManager, "save", disk_full)
  with pytest.raises(workdir_lib.SaveError, match="checkpoint 2 .*: no space left on device"):
    fit(tiny_config(4, checkpoint_every_steps=2), tmp_path)
  assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == []
  assert "saved" not in capsys.readouterr().out


def test_gs_paths_go_through_epath(fake_gcs):
  """config.json, metrics, TensorBoard and the data report on a (fake, in-memory) gs://.

  Orbax itself writes array data to gs:// through TensorStore's own GCS driver, which
  needs the network; that part cannot run here.
  """
  run = "gs://bucket/runs/r1"
  config = tiny_config(3)
  assert workdir_lib.resolve_config(run, config).train.num_train_steps == 3
  workdir_lib.write_config(run, config)
  other = tiny_config(3)
  other.model.z_size = 4
  with pytest.raises(workdir_lib.WorkdirError, match="model.z_size: 8 -> 4"):
    workdir_lib.resolve_config(run, other)
  assert workdir_lib.load_config(run).model.z_size == 8
  writer = workdir_lib.MetricWriter(run)
  for step in (1, 2, 3):
    writer.write("train", step, {"loss": float(step)})
  writer.close()
  workdir_lib.MetricWriter(run, resume_step=2).close()
  assert [json.loads(l)["step"] for l in
          workdir_lib.path(run).joinpath("metrics.jsonl").read_text().splitlines()] == [1, 2]
  assert scalar_steps(workdir_lib.path(run) / "tensorboard" / "train") == {"loss": [1, 2]}
  workdir_lib.update_data_report(run, {"train": {"files": 1}})
  assert json.loads(workdir_lib.path(run).joinpath("data_report.json").read_text()) == {
      "train": {"files": 1}}
  assert "bucket/runs/r1/config.json" in str(fake_gcs.store)
  with workdir_lib.lock(run):  # object stores: no lock, and no error
    pass


def test_user_errors_are_one_line(tmp_path):
  data = [f"--config.data.path={FIXTURES / 'groove'}", f"--config.data.cache_dir={tmp_path}"]
  cases = {
      "config file configs/nope.py not found": ("flax_musicvae.main", "--config=configs/nope.py",
                              f"--workdir={tmp_path / 'a'}"),
      "train.batch_size must be a positive integer, got 0": (
          "flax_musicvae.main", "--config=configs/groove_4bar.py", *data,
          "--config.train.batch_size=0", f"--workdir={tmp_path / 'b'}"),
      "train.num_train_steps must be a positive integer, got -8": (
          "flax_musicvae.main", "--config=configs/groove_4bar.py", *data,
          "--config.train.num_train_steps=-8", f"--workdir={tmp_path / 'c'}"),
      "has no config.json: pass --config": ("flax_musicvae.main", f"--workdir={tmp_path}/d",
                                            "--mode=eval"),
      "checkpoint index not found": ("flax_musicvae.import_checkpoint", "--config=configs/groove_4bar.py",
                            f"--checkpoint={tmp_path / 'random.tar'}", f"--workdir={tmp_path}/e"),
  }
  (tmp_path / "random.tar").write_bytes(np.random.default_rng(0).bytes(5000))
  procs = {message: subprocess.Popen(
      [sys.executable, "-m", *argv], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
      text=True) for message, argv in cases.items()}
  for message, proc in procs.items():
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 2, (message, err[-2000:])
    lines = [l for l in err.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], err


def test_overrides_without_config_apply_to_the_saved_config(tmp_path):
  """``--workdir=W --config.<field>=V`` (the README's "continue later"): the override is
  applied to W's config.json, so a model change is refused by name and a bad train value
  is reported as such."""
  fit(tiny_config(2), tmp_path)
  cases = {"model.z_size: 8 -> 4": "--config.model.z_size=4",
           "train.num_train_steps must be a positive integer, got -1":
               "--config.train.num_train_steps=-1"}
  for message, override in cases.items():
    proc = subprocess.run([sys.executable, "-m", "flax_musicvae.main", f"--workdir={tmp_path}",
                           override], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          check=False)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert message in proc.stderr.strip().splitlines()[-1], proc.stderr[-2000:]
