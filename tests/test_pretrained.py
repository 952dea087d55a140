"""Shipped models: packaging a run, the float16 round trip, ``generate --model``, errors."""

import datetime
import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

from conftest import ROOT
from flax_musicvae import config_lib
from flax_musicvae import inference
from flax_musicvae import pretrained
from flax_musicvae import train
from flax_musicvae import workdir as workdir_lib
from test_generate_cli import run as run_generate
from test_train import EVAL, TRAIN, tiny_config


def cli(*args, **env):
  """``python -m flax_musicvae.pretrained ARGS``: (exit code, stdout, stderr)."""
  res = subprocess.run([sys.executable, "-m", "flax_musicvae.pretrained", *args], cwd=ROOT,
                       capture_output=True, text=True, env={**os.environ, **env}, check=False)
  return res.returncode, res.stdout, res.stderr


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("run")
  train.train_and_evaluate(tiny_config(4), workdir, train_data=TRAIN, eval_data=EVAL)
  return workdir


@pytest.fixture(scope="module")
def registry(run_dir, tmp_path_factory):
  folder = tmp_path_factory.mktemp("registry")
  code, out, err = cli(f"--workdir={run_dir}", "--name=tiny", f"--output_dir={folder}")
  assert code == 0, err
  assert "weights.npz" in out
  return folder


@pytest.fixture(autouse=True)
def caches(tmp_path, monkeypatch):
  monkeypatch.setattr(inference.loading, "CACHE_DIR", tmp_path / "cache")
  monkeypatch.setattr(inference, "enable_compilation_cache", lambda: None)


def test_float16_round_trip_is_exact(run_dir, registry):
  assert pretrained.available(registry) == ["tiny"]
  with np.load(registry / "tiny" / pretrained.WEIGHTS_FILE) as npz:
    assert {npz[k].dtype for k in npz.files} == {np.dtype(np.float16)}
  config, params = pretrained.load("tiny", registry)
  run_config, run_params, step = workdir_lib.load(run_dir)
  assert step == 4 and config.to_dict() == run_config.to_dict()
  loaded, expected = (workdir_lib.flatten_params(jax.device_get(p)) for p in (params, run_params))
  assert loaded.keys() == expected.keys()
  for k, v in loaded.items():
    assert v.dtype == np.float32
    np.testing.assert_array_equal(v, expected[k].astype(np.float16).astype(np.float32), k)


def test_model_card_has_the_runs_facts(run_dir, registry):
  card = (registry / "tiny" / pretrained.CARD_FILE).read_text()
  eval_loss = [r for r in workdir_lib.read_metrics(run_dir) if r["split"] == "eval"][-1]["loss"]
  for fact in ("steps: 4 at batch size 8", "dataset `groove`",
               "split `train`", "CC BY 4.0", f"| eval | 4 | loss | {eval_loss:.6g} |",
               "--model=tiny"):
    assert fact in card, fact
  info = pretrained.training_info("tiny", registry)
  assert (info["step"], info["batch_size"], info["workdir"]) == (4, 8, str(run_dir))
  wall_time = datetime.timedelta(seconds=round(info["wall_seconds"]))  # h:mm:ss, any load
  assert f"training wall time: {wall_time} " in card


def test_card_sections_are_replaced_not_repeated(registry, tmp_path):
  folder = tmp_path / "copy"
  (folder / "t").mkdir(parents=True)
  for f in (pretrained.WEIGHTS_FILE, pretrained.CARD_FILE, "config.json"):
    (folder / "t" / f).write_bytes((registry / "tiny" / f).read_bytes())
  card = (folder / "t" / pretrained.CARD_FILE).read_text()
  pretrained.set_card_section("t", "Quality", "| a | 1 |", folder)
  pretrained.set_card_section("t", "Quality", "| a | 2 |", folder)
  assert (folder / "t" / pretrained.CARD_FILE).read_text() == (
      card.rstrip("\n") + "\n\n## Quality\n\n| a | 2 |\n")


def test_generate_model_equals_workdir_with_rounded_weights(run_dir, registry, capsys,
                                                            tmp_path, monkeypatch):
  config, params = pretrained.load("tiny", registry)
  rounded = inference.save_workdir(config, params, tmp_path / "rounded")
  monkeypatch.setenv(pretrained.ROOT_ENV, str(registry))
  notes = []
  for source in ("--model=tiny", f"--workdir={rounded}", "--model=tiny"):
    code, out, err = run_generate(capsys, source, "--mode=sample", "--num_outputs=2",
                                  "--seed=3", "--no-png", f"--output_dir={tmp_path / 'out'}")
    assert code == 0, err
    mids = [line.split(" ", 1)[1] for line in out.splitlines() if line.endswith(".mid")]
    assert len(mids) == 2
    notes.append([inference.read_midi(m).notes for m in mids])
  assert notes[0] == notes[1] == notes[2]


def test_unknown_model_lists_the_available_ones(registry, capsys, tmp_path, monkeypatch):
  monkeypatch.setenv(pretrained.ROOT_ENV, str(registry))
  code, _, err = run_generate(capsys, "--model=nope", "--mode=sample")
  assert code == 2 and err == "error: unknown model 'nope': available models are tiny\n"
  code, _, err = run_generate(capsys, "--model=tiny", "--mode=continue")
  assert code == 2 and err.count("\n") == 1 and "--bundle_file" in err
  monkeypatch.setenv(pretrained.ROOT_ENV, str(tmp_path / "empty"))
  code, _, err = run_generate(capsys, "--model=groove_4bar", "--mode=sample")
  assert code == 2 and err.count("\n") == 1 and "no trained model ships yet" in err


def test_each_mode_defaults_to_its_shipped_model(registry, capsys, tmp_path, monkeypatch):
  folder = tmp_path / "registry"
  (folder / "groove_4bar").mkdir(parents=True)
  for f in (pretrained.WEIGHTS_FILE, "config.json"):
    (folder / "groove_4bar" / f).write_bytes((registry / "tiny" / f).read_bytes())
  monkeypatch.setenv(pretrained.ROOT_ENV, str(folder))
  code, out, err = run_generate(capsys, "--mode=sample", "--num_outputs=1", "--no-png",
                                f"--output_dir={tmp_path / 'out'}")
  assert code == 0 and out.count(".mid") == 1, err
  code, _, err = run_generate(capsys, "--mode=humanize", "--input_midi_1=x.mid")
  assert code == 2 and err == ("error: unknown model 'groove_2bar_humanize': available models "
                               "are groove_4bar\n")
  code, _, err = run_generate(capsys, "--mode=transfer")
  assert code == 2 and err.startswith("error: --mode=transfer has no shipped model"), err


def test_bad_runs_are_one_error_line(run_dir, registry, tmp_path):
  model = inference.MusicVAEModel.init_random(config_lib.tiny(tiny_config()), seed=0)
  params = jax.tree.map(np.asarray, model.params)
  params = workdir_lib.unflatten_params(  # kernels beyond float16's 65504
      {k: v * 1e9 if k.endswith("kernel") else v
       for k, v in workdir_lib.flatten_params(params).items()})
  huge = inference.save_workdir(model.config, params, tmp_path / "huge")
  for args, message in (
      ([f"--workdir={huge}", "--name=huge"], "non-finite weights in float16"),
      ([f"--workdir={tmp_path / 'missing'}", "--name=m"], "config.json not found")):
    code, _, err = cli(*args, f"--output_dir={registry}")
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1, err
    assert message in err, err
  with pytest.raises(FileExistsError, match="--overwrite"):
    pretrained.package(run_dir, "tiny", registry)
  with pytest.raises(pretrained.PackageError, match="--name='../x'"):
    pretrained.package(run_dir, "../x", registry)
  assert pretrained.available(registry) == ["tiny"]


def test_loading_a_shipped_model_needs_no_orbax_or_tensorflow(registry, tmp_path):
  script = textwrap.dedent(f"""
      import sys
      from flax_musicvae import generate
      generate.main(["--model=tiny", "--mode=sample", "--num_outputs=1", "--no-png",
                     "--output_dir={tmp_path}"])
      loaded = {{m.split(".")[0] for m in sys.modules}}
      print(sorted(loaded & {{"orbax", "tensorflow"}}))
      """)
  env = {**os.environ, pretrained.ROOT_ENV: str(registry),
         "FLAX_MUSICVAE_CACHE": str(tmp_path / "cache")}
  res = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True,
                       text=True, check=True)
  assert res.stdout.splitlines()[-1] == "[]", res.stdout + res.stderr
  assert list(tmp_path.glob("*.mid"))
