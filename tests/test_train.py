"""Training loop: exact resume, warm start, eval mode, checkpoint on interrupt,
8-device == 1-device data parallelism, TensorBoard event files, a real-data run, and the
first command on a fresh machine (data fetched, samples per eval, resumed)."""

import csv
import functools
import json
import os
import re
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

from note_seq.protobuf import music_pb2

from flax_musicvae import config_lib
from flax_musicvae import render
from flax_musicvae import train
from flax_musicvae import workdir as workdir_lib
from tests.conftest import ROOT

#: ``tiny_config(steps, **train)``: a short groove_4bar run at toy widths, batch 8.
tiny_config = functools.partial(config_lib.tiny, "groove_4bar", rnn=16, z=8, log_every_steps=2,
                                checkpoints_to_keep=2)


def groove_like(n: int, seed: int, steps: int = 64) -> dict[str, np.ndarray]:
  """Random arrays shaped like GrooveConverter examples (hits | velocities | offsets)."""
  rng = np.random.default_rng(seed)
  hits = (rng.random((n, steps, 9)) < 0.2).astype(np.float32)
  x = np.concatenate([hits, hits * rng.random(hits.shape), hits * rng.uniform(-1, 1, hits.shape)],
                     -1).astype(np.float32)
  return {"inputs": x, "outputs": x.copy(), "controls": np.zeros((n, steps, 0), np.float32),
          "lengths": np.full(n, steps, np.int32)}


TRAIN, EVAL = groove_like(24, seed=0), groove_like(8, seed=1)


@pytest.fixture(scope="module", autouse=True)
def compilation_cache(tmp_path_factory):
  """Every run below compiles the same programs: share them through JAX's disk cache."""
  old = (jax.config.jax_compilation_cache_dir,
         jax.config.jax_persistent_cache_min_compile_time_secs)
  jax.config.update("jax_compilation_cache_dir", str(tmp_path_factory.mktemp("jax_cache")))
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
  yield
  jax.config.update("jax_compilation_cache_dir", old[0])
  jax.config.update("jax_persistent_cache_min_compile_time_secs", old[1])


def restored_state(config, workdir):
  with workdir_lib.Checkpoints(workdir / "checkpoints") as ckpts:
    return train._restore_or_warm_start(config, train._setup(config, TRAIN), ckpts)


def assert_trees_equal(a, b):
  for (path, x), y in zip(jax.tree_util.tree_leaves_with_path(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y), err_msg=str(path))


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("straight")
  result = train.train_and_evaluate(tiny_config(6), workdir, train_data=TRAIN, eval_data=EVAL)
  return workdir, result


def test_resume_continues_the_identical_run(straight_run, tmp_path):
  workdir, _ = straight_run
  train.train_and_evaluate(tiny_config(3), tmp_path, train_data=TRAIN, eval_data=EVAL)
  train.train_and_evaluate(tiny_config(6), tmp_path, train_data=TRAIN, eval_data=EVAL)
  resumed, straight = restored_state(tiny_config(6), tmp_path), restored_state(
      tiny_config(6), workdir)
  assert int(resumed.step) == int(straight.step) == 6
  assert_trees_equal(resumed, straight)  # params, both Adam moments, step counts, rng


def test_workdir_contents(straight_run):
  workdir, result = straight_run
  assert json.loads((workdir / "config.json").read_text())["model"]["decoder"] == "groove"
  lines = [json.loads(l) for l in (workdir / "metrics.jsonl").read_text().splitlines()]
  assert [l["step"] for l in lines if l["split"] == "train"] == [2, 4, 6]
  last_eval = [l for l in lines if l["split"] == "eval"][-1]
  assert last_eval["step"] == 6 and last_eval["loss"] == pytest.approx(result["eval"]["loss"])
  for key in ("r_loss", "kl_loss", "kl_bits", "beta", "teacher_forced/accuracy",
              "free_running/accuracy"):
    assert np.isfinite(last_eval[key]), key
  assert sorted(p.name for p in (workdir / "checkpoints").iterdir() if p.name.isdigit()) == ["6"]
  assert list((workdir / "tensorboard" / "train").glob("events.out.tfevents.*"))


def test_keeps_the_last_n_checkpoints(tmp_path):
  config = tiny_config(6, checkpoint_every_steps=1, checkpoints_to_keep=2)
  train.train_and_evaluate(config, tmp_path, train_data=TRAIN, eval_data=EVAL)
  steps = sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit())
  assert steps == [5, 6]


def test_eval_mode_reproduces_final_evaluation(straight_run):
  workdir, result = straight_run
  metrics = train.evaluate(tiny_config(6), workdir, eval_data=EVAL)
  assert metrics == pytest.approx(result["eval"], rel=1e-6)
  assert metrics["teacher_forced/accuracy"] != metrics["free_running/accuracy"]


def test_warm_start_takes_params_only(straight_run, tmp_path):
  workdir, _ = straight_run
  config = tiny_config(1, warm_start_from=str(workdir), seed=1)
  train.train_and_evaluate(config, tmp_path, train_data=TRAIN, eval_data=EVAL)
  source, warm = restored_state(tiny_config(6), workdir), restored_state(config, tmp_path)
  fresh = train._setup(config, TRAIN).state
  # One TF1 Adam step moves each parameter by at most lr = 1e-3 from the source run's
  # values; this run's own (seed 1) initial parameters are much further away.
  distance = lambda a, b: max(float(np.max(np.abs(x - y))) for x, y in
                              zip(jax.tree.leaves(a), jax.tree.leaves(b)))
  assert 0 < distance(warm.params, source.params) <= 1.001e-3
  assert distance(fresh.params, source.params) > 1e-2
  assert int(warm.step) == 1 and int(warm.opt_state[1].count) == 1  # fresh optimiser
  with pytest.raises(FileNotFoundError, match="no checkpoint"):
    workdir_lib.load_params(tmp_path / "nowhere", warm.params)


def test_interrupt_saves_a_checkpoint(tmp_path, monkeypatch):
  write = workdir_lib.MetricWriter.write

  def interrupt_at_step_4(self, split, step, metrics):
    write(self, split, step, metrics)
    if step == 4:
      raise KeyboardInterrupt

  monkeypatch.setattr(workdir_lib.MetricWriter, "write", interrupt_at_step_4)
  with pytest.raises(KeyboardInterrupt):
    train.train_and_evaluate(tiny_config(6), tmp_path, train_data=TRAIN, eval_data=EVAL)
  assert (tmp_path / "checkpoints" / "4").is_dir()


def test_too_little_data_is_a_clear_error(tmp_path):
  with pytest.raises(train.ConfigError, match="training split has 5 examples, fewer than one"):
    train.train_and_evaluate(tiny_config(6), tmp_path, train_data=groove_like(5, 0),
                             eval_data=EVAL)


@pytest.mark.tf
def test_tensorboard_events_readable_by_tensorflow(tmp_path):
  tf = pytest.importorskip("tensorflow")
  writer = workdir_lib.MetricWriter(tmp_path)
  writer.write("eval", 7, {"loss": 1.5, "free_running/accuracy": 0.25})
  writer.close()
  (path,) = workdir_lib.event_files(tmp_path / "tensorboard" / "eval")
  events = list(tf.compat.v1.train.summary_iterator(str(path)))
  assert events[0].file_version == "brain.Event:2"
  assert {(e.step, v.tag, v.simple_value) for e in events[1:] for v in e.summary.value} == {
      (7, "loss", 1.5), (7, "free_running/accuracy", 0.25)}
  beat = music_pb2.NoteSequence(total_time=2.0)
  beat.tempos.add(qpm=120)
  beat.notes.add(pitch=36, velocity=100, start_time=0.0, end_time=0.1, is_drum=True)
  png = tmp_path / "grid.png"
  render.save_png([beat], png)
  writer = workdir_lib.MetricWriter(tmp_path)
  writer.images("eval", 9, {"samples": png.read_bytes()})
  writer.close()
  path = workdir_lib.event_files(tmp_path / "tensorboard" / "eval")[-1]  # the second writer's
  image = list(tf.compat.v1.train.summary_iterator(str(path)))[-1].summary.value[0]
  decoded = tf.io.decode_png(image.image.encoded_image_string).numpy()
  assert (image.tag, image.image.height, image.image.width) == ("samples", *decoded.shape[:2])


_DEVICES_WORKER = textwrap.dedent("""
    import jax, numpy as np
    from flax_musicvae import input_pipeline, models, optim, steps
    from tests import test_train as t
    assert jax.device_count() == 8, jax.devices()
    config = t.tiny_config(6)
    data = t.groove_like(24, seed=0)
    results = {}
    for n in (1, 8):
      mesh = jax.sharding.Mesh(np.asarray(jax.devices()[:n]), ("data",))
      model = models.build_model(config)
      tx = optim.create_optimizer(config.train)
      state = steps.init_train_state(config, model, tx, data, mesh)
      step = steps.make_train_step(config, model, tx, mesh)
      sharding = steps.shardings(mesh)[1]
      losses = []
      for batch in input_pipeline.train_batches(data, 8, seed=0):
        state, metrics = step(state, input_pipeline.shard_batch(batch, sharding))
        losses.append(float(metrics["loss"]))
        if len(losses) == 3:
          break
      results[n] = (losses, jax.device_get(state.params))
    np.testing.assert_allclose(results[1][0], results[8][0], rtol=1e-5)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6),
                 results[1][1], results[8][1])
    assert results[1][0][0] != results[1][0][2]
    print("OK", results[1][0], results[8][0])
""")


def test_eight_devices_match_one_device():
  # The flag must be set before jax is imported, hence the subprocess; optimisation level 0
  # halves the compile time and applies to both meshes alike.
  flags = "--xla_force_host_platform_device_count=8 --xla_backend_optimization_level=0"
  env = dict(os.environ, XLA_FLAGS=f"{os.environ.get('XLA_FLAGS', '')} {flags}".strip(),
             JAX_PLATFORMS="cpu")
  proc = subprocess.run([sys.executable, "-c", _DEVICES_WORKER], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stdout + proc.stderr[-4000:]
  assert "OK" in proc.stdout


def groove_subset(groove_dir, target, files_per_split):
  """A Groove folder (symlinks) whose info.csv keeps the first files of some splits."""
  with open(groove_dir / "info.csv", newline="") as f:
    reader = csv.DictReader(f)
    rows, fields = list(reader), reader.fieldnames
  kept = [r for split, n in files_per_split.items()
          for r in [r for r in rows if r["split"] == split][:n]]
  target.mkdir()
  with open(target / "info.csv", "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=fields)
    writer.writeheader()
    writer.writerows(kept)
  for r in kept:
    link = target / r["midi_filename"]
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(groove_dir / r["midi_filename"])
  return target


@pytest.mark.slow
def test_real_groove_data_validation_loss_drops(groove_dir, tmp_path):
  """A small groove_4bar model, 200 steps on 60 real train files: validation loss falls."""
  c = config_lib.tiny("groove_4bar", 1, rnn=32, z=16, batch_size=32, log_every_steps=50,
                      eval_num_batches=4)
  c.data.path = str(groove_subset(groove_dir, tmp_path / "groove",
                                  {"train": 60, "validation": 12}))
  c.data.cache_dir = str(tmp_path / "cache")
  workdir = tmp_path / "run"
  first = train.train_and_evaluate(c, workdir)["eval"]
  c.train.num_train_steps = 200
  last = train.train_and_evaluate(c, workdir)["eval"]
  print("validation loss", first["loss"], "->", last["loss"])
  assert last["loss"] < 0.7 * first["loss"], (first["loss"], last["loss"])
  assert last["teacher_forced/accuracy"] > first["teacher_forced/accuracy"]


def test_pace_line_gives_the_eta_and_a_short_run_for_long_ones():
  config = config_lib.load("groove_4bar")  # batch 512, 200,000 steps
  pace = train._Pace(0, warmup_steps=2, min_steps=3, min_seconds=0.0)
  assert [pace.done(s) for s in (1, 2, 3, 4)] == [None] * 4
  assert pace.done(5) is not None and pace.done(6) is None  # measured once
  line = train.pace_line(config, 4.7, 0)
  assert line.startswith("step time 4.7 s after warm-up: 261.1 h for the 200,000 steps left")
  # 4.7 s at batch 512 -> ~0.59 s at batch 64: 15 minutes is ~1,500 steps.
  assert ("--config.train.batch_size=64 --config.train.num_train_steps=1500 "
          "--config.train.eval_every_steps=350") in line
  assert train.pace_line(config, 0.01, 199_000) == (
      "step time 0.01 s after warm-up: 10 s for the 1,000 steps left")


_TINY_GROOVE_CONFIG = textwrap.dedent("""
    from flax_musicvae import config_lib

    def get_config():
      c = config_lib.tiny("groove_4bar", 4, rnn=16, z=8, log_every_steps=2, eval_every_steps=2,
                          checkpoint_every_steps=2, eval_samples=1)
      c.data.cache_dir = "arrays"    # data.path: the default, absent on this machine
      return c
""")


def test_first_command_on_a_fresh_machine(tmp_path, monkeypatch):
  """No local data: the Groove zip is fetched (from a local server) and verified, samples
  are written at each eval, and a resumed run continues the series, keeping the old ones."""
  from tests import test_data_fetch  # pylint: disable=g-import-not-at-top
  fresh = tmp_path / "fresh"
  fresh.mkdir()
  (fresh / "tiny.py").write_text(_TINY_GROOVE_CONFIG)
  env = dict(os.environ, PYTHONPATH=str(ROOT), FLAX_MUSICVAE_CACHE=str(tmp_path / "cache"),
             JAX_PLATFORMS="cpu", JAX_COMPILATION_CACHE_DIR=str(tmp_path / "jax"),
             JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")

  def main(*flags):
    proc = subprocess.run([sys.executable, "-m", "flax_musicvae.main", "--workdir=run",
                           *flags], cwd=fresh, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    return proc.stdout + proc.stderr

  with test_data_fetch.serving_groove(monkeypatch) as server:
    env.update({k: os.environ[k] for k in os.environ if k.startswith("FLAX_MUSICVAE_GROOVE")})
    first = main("--config=tiny.py")
    samples = fresh / "run" / "samples"
    before = {p: p.read_bytes() for p in samples.rglob("*") if p.is_file()}
    second = main("--config=tiny.py", "--config.train.num_train_steps=6")
  print(first, second)  # shown when an assertion below fails
  assert server.requests == [None]  # downloaded once, then read from the cache
  assert "Downloading http://127.0.0.1" in first and "Verified" in first
  assert "Downloading" not in second
  assert (tmp_path / "cache" / "groove-v1.0.0-midionly.zip").read_bytes() == server.body
  assert re.search(r"groovae_4bar: [\d,]+ parameters, 1 cpu device, batch 8, steps 0 -> 4",
                   first)
  assert "steps 4 -> 6" in second
  for out, steps in ((first, (2, 4)), (second, (6,))):
    for step in steps:
      assert f"step {step}: eval loss" in out and f"samples: {samples}/step_{step:06d}" in out
  names = {"sample_0.mid", "samples.png", "samples.wav", "reconstruction_0.mid",
           "reconstructions.png", "reconstructions.wav"}
  for step in (2, 4, 6):
    assert {p.name for p in (samples / f"step_{step:06d}").iterdir()} == names
  assert {p.name for p in (samples / "validation").iterdir()} == {
      "example_0.mid", "examples.png", "examples.wav"}
  # The resumed run added step 6 and left every earlier file as it was.
  assert all(p.read_bytes() == data for p, data in before.items())
  # Each evaluation's pictures are in TensorBoard too (the Images tab).
  images = {(e.step, v.tag): v.image.encoded_image_string
            for f in workdir_lib.event_files(samples.parent / "tensorboard" / "eval")
            for e in workdir_lib.read_events(f) for v in e.summary.value if v.HasField("image")}
  assert images == {(step, png): (samples / f"step_{step:06d}" / f"{png}.png").read_bytes()
                    for step in (2, 4, 6) for png in ("samples", "reconstructions")}


def test_first_command_offline_is_one_error_line(tmp_path):
  from tests import test_data_fetch  # pylint: disable=g-import-not-at-top
  (tmp_path / "tiny.py").write_text(_TINY_GROOVE_CONFIG)
  env = dict(os.environ, PYTHONPATH=str(ROOT), FLAX_MUSICVAE_CACHE=str(tmp_path / "cache"),
             JAX_PLATFORMS="cpu", FLAX_MUSICVAE_GROOVE_URL=test_data_fetch.closed_port_url())
  proc = subprocess.run([sys.executable, "-m", "flax_musicvae.main", "--workdir=run",
                         "--config=tiny.py"], cwd=tmp_path, env=env, capture_output=True,
                        text=True, timeout=300)
  assert proc.returncode == 2, proc.stderr[-3000:]
  errors = [l for l in proc.stderr.splitlines() if "error" in l.lower()]
  assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
  assert errors[0].startswith("error: data: could not download http://127.0.0.1:")
  assert f"put groove-v1.0.0-midionly.zip (from that address) in {tmp_path / 'cache'}" in errors[0]


def test_failing_eval_samples_do_not_end_the_run(tmp_path, monkeypatch, capsys):
  def no_matplotlib(*_):
    raise ModuleNotFoundError("No module named 'matplotlib'")
  monkeypatch.setattr(render, "save_png", no_matplotlib)
  train.train_and_evaluate(tiny_config(4, eval_samples=1, eval_every_steps=2), tmp_path,
                           train_data=TRAIN, eval_data=EVAL)
  assert (tmp_path / "checkpoints" / "4").is_dir()
  out = capsys.readouterr().out
  assert out.count("samples not written (ModuleNotFoundError: No module named 'matplotlib')"
                   ) == 1 and "step 4: eval loss" in out


def test_eval_samples_are_fixed_across_steps_and_resumes(tmp_path):
  """The same params give the same files at any step and from a new writer (a resumed run);
  another seed gives other samples."""
  from flax_musicvae import eval_samples, inference  # pylint: disable=g-import-not-at-top
  config = tiny_config(6, eval_samples=2)
  params = inference.MusicVAEModel.init_random(config).params
  midis = lambda folder: {p.name: p.read_bytes() for p in folder.glob("*.mid")}
  first = midis(eval_samples.EvalSamples(config, tmp_path, EVAL).write(1, params))
  resumed = midis(eval_samples.EvalSamples(config, tmp_path, EVAL).write(2, params))
  assert sorted(first) == ["reconstruction_0.mid", "reconstruction_1.mid", "sample_0.mid",
                           "sample_1.mid"]
  assert first == resumed
  config.train.seed = 1
  other = midis(eval_samples.EvalSamples(config, tmp_path / "other", EVAL).write(1, params))
  assert other["sample_0.mid"] != first["sample_0.mid"]
