"""Importing Magenta TF1 checkpoints into Flax params, and exporting them back."""

import json
import re
import subprocess
import sys
import tarfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flax_musicvae import cli
from flax_musicvae import config_lib
from flax_musicvae.checkpoints import magenta_import as mi
from flax_musicvae.checkpoints import magentajs
from flax_musicvae.checkpoints import tensor_bundle as tb
from flax_musicvae.models import vae

from conftest import ROOT
from test_models_parity import GOLDEN

GOLDEN_CONFIGS = sorted(GOLDEN)


def _golden_weights(golden_dir, config):
  return tb.read_checkpoint(golden_dir / config)


def _shapes(tensors):
  return {k: np.shape(v) for k, v in tensors.items()}


def test_match_variables_applies_magenta_substitutions(golden_dir):
  expected = _shapes(_golden_weights(golden_dir, "groovae_4bar"))
  del expected["global_step"]
  # An "old" checkpoint whose LSTM variables were stored under different names.
  renamed = {k.replace("lstm_cell/kernel", "basic_lstm_cell/weights"): v
             for k, v in expected.items()}
  subs = [(r"lstm_cell/kernel$", "basic_lstm_cell/weights")]
  keys = mi.match_variables(renamed, expected, subs)
  assert sorted(keys) == sorted(expected)
  assert keys["decoder/multi_rnn_cell/cell_0/lstm_cell/kernel"] == (
      "decoder/multi_rnn_cell/cell_0/basic_lstm_cell/weights")
  assert keys["encoder/mu/bias"] == "encoder/mu/bias"
  assert set(keys.values()) == set(renamed)


def test_match_variables_ignores_training_state(golden_dir):
  expected = _shapes(_golden_weights(golden_dir, "cat-drums_2bar_small"))
  available = dict(expected, beta1_power=(), beta2_power=(), beta1_power_1=())
  for name in list(expected):
    available[name + "/Adam"] = available[name + "/Adam_1"] = expected[name]
  del expected["global_step"]
  assert sorted(mi.match_variables(available, expected)) == sorted(expected)


def test_mismatch_lists_missing_unexpected_and_misshaped(golden_dir):
  available = _shapes(_golden_weights(golden_dir, "groovae_4bar"))
  expected = _shapes(_golden_weights(golden_dir, "cat-drums_2bar_small"))
  del expected["global_step"]
  available["decoder/extra/bias"] = (3,)
  del available["encoder/mu/bias"]
  with pytest.raises(mi.CheckpointMismatchError) as err:
    mi.match_variables(available, expected, what="config cat-drums_2bar_small")
  message = str(err.value)
  assert "do not match config cat-drums_2bar_small" in message
  assert "missing (1):\n    encoder/mu/bias" in message
  assert "unexpected (1):\n    decoder/extra/bias" in message
  assert "decoder/output_projection/bias: checkpoint [27], model [512]" in message
  assert "decoder/multi_rnn_cell/cell_0/lstm_cell/kernel: checkpoint [75, 128], model [560, 128]" \
      in message


def test_import_applies_substitutions_and_skips_optimizer_slots(golden_dir, tmp_path):
  name = "groovae_4bar"
  weights = _golden_weights(golden_dir, name)
  stored = {re.sub(r"^encoder/", "vae/encoder/", k): v for k, v in weights.items()}
  stored.update({k + "/Adam": np.zeros_like(v) for k, v in weights.items() if v.ndim})
  stored["global_step"] = np.array(777, np.int64)
  tb.write_checkpoint(tmp_path / "model.ckpt-777", stored)
  config = _golden_config(golden_dir, name)
  params, step = mi.import_params(tmp_path, config, [(r"^encoder/", "vae/encoder/")])
  assert step == 777
  want, _ = mi.import_params(golden_dir / name, config)
  _params_equal(params, want)


def _small_sizes(golden_dir, name):
  """The reduced sizes the golden checkpoints were made with (meta.json hparams)."""
  hp = json.loads((golden_dir / name / "meta.json").read_text())["hparams"]
  return {"z_size": hp["z_size"], "enc_rnn_size": tuple(hp["enc_rnn_size"]),
          "dec_rnn_size": tuple(hp["dec_rnn_size"])}


def _golden_config(golden_dir, name):
  """Our config file for a golden folder, at the golden's small sizes."""
  config = config_lib.load(GOLDEN[name])
  config.model.update(_small_sizes(golden_dir, name))
  return config


@pytest.mark.parametrize("name", GOLDEN_CONFIGS)
def test_imported_golden_checkpoint_reproduces_magenta(golden_dir, name):
  config = _golden_config(golden_dir, name)
  params, step = mi.import_params(golden_dir / name, config)
  assert step == 0
  golden = np.load(golden_dir / name / "golden.npz")
  model = vae.build_model(config)
  batch = {"inputs": golden["enc_inputs"], "outputs": golden["x_target"],
           "lengths": golden["enc_lengths"]}
  mu, sigma = model.apply({"params": params}, batch, method=vae.MusicVAE.encode)
  np.testing.assert_allclose(mu, golden["mu"], atol=1e-5)
  np.testing.assert_allclose(sigma, golden["sigma"], atol=1e-5)
  logits = model.apply({"params": params}, jnp.asarray(golden["z_given"]), batch,
                       method=vae.MusicVAE.decode)
  np.testing.assert_allclose(logits, golden["tf_rnn_output"], atol=1e-5)
  greedy = model.apply({"params": params}, jnp.asarray(golden["z_given"]), temperature=None,
                       method=vae.MusicVAE.sample, rngs={"sample": jax.random.PRNGKey(0)})
  np.testing.assert_allclose(greedy["logits"], golden["greedy_rnn_output"], atol=1e-5)
  # One-hots / hits are 0 or 1, so any wrong choice fails; groove velocities/offsets are values.
  np.testing.assert_allclose(greedy["outputs"], golden["greedy_samples"], atol=1e-5)


@pytest.mark.parametrize("name", GOLDEN_CONFIGS)
def test_export_round_trips_to_identical_checkpoint(golden_dir, tmp_path, name):
  params, step = mi.import_params(golden_dir / name, _golden_config(golden_dir, name))
  prefix = mi.export_tf_checkpoint(params, tmp_path / "model.ckpt", global_step=step)
  for suffix in (".index", ".data-00000-of-00001"):  # same names, values, order: same bytes
    assert (tmp_path / f"model.ckpt{suffix}").read_bytes() == (
        golden_dir / name / f"model.ckpt{suffix}").read_bytes()
  assert tb.read_checkpoint(prefix)["global_step"] == step


def test_import_with_wrong_config_lists_differences(golden_dir):
  config = _golden_config(golden_dir, "cat-drums_2bar_small")
  config.model.dec_rnn_size = (32, 32, 32)
  with pytest.raises(mi.CheckpointMismatchError) as err:
    mi.import_params(golden_dir / "cat-drums_2bar_small", config)
  message = str(err.value)
  assert "do not match config cat-drums_2bar_small" in message
  assert "missing (2):" in message and "decoder/multi_rnn_cell/cell_2/lstm_cell/kernel" in message
  assert "decoder/z_to_initial_state/kernel: checkpoint [16, 128], model [16, 192]" in message


def _params_equal(a, b):
  assert jax.tree.structure(a) == jax.tree.structure(b)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_workdir_is_readable_by_the_training_program(golden_dir, tmp_path):
  from flax_musicvae import import_checkpoint, optim
  from flax_musicvae import workdir as workdir_lib
  config = _golden_config(golden_dir, "groovae_4bar")
  params, _ = mi.import_params(golden_dir / "groovae_4bar", config)
  folder = import_checkpoint.save_to_workdir(params, 1234, config, tmp_path)
  assert folder == tmp_path / "checkpoints" / "1234"
  assert json.loads((tmp_path / "config.json").read_text())["name"] == "groovae_4bar"
  zeros = jax.tree.map(jnp.zeros_like, params)
  _params_equal(workdir_lib.load_params(tmp_path, zeros)[0], params)  # warm start
  tx = optim.create_optimizer(config.train)
  template = workdir_lib.Checkpoint(0, zeros, tx.init(zeros), jax.random.PRNGKey(0))
  with workdir_lib.Checkpoints(tmp_path / "checkpoints") as ckpts:  # resume / evaluate
    state = ckpts.restore(template)
  assert state.step == 1234
  _params_equal(state.params, params)
  with pytest.raises(FileExistsError):
    import_checkpoint.save_to_workdir(params, 1234, config, tmp_path)
  _, loaded, step = workdir_lib.load(tmp_path)  # export direction
  assert step == 1234
  _params_equal(loaded, params)


def test_parse_substitutions():
  from flax_musicvae import import_checkpoint
  assert import_checkpoint.parse_substitutions(["^old/(.*)=new/\\1", "a=b=c"]) == [
      ("^old/(.*)", "new/\\1"), ("a", "b=c")]
  with pytest.raises(Exception, match="PATTERN=REPLACEMENT"):
    import_checkpoint.parse_substitutions(["no_separator"])


def _bundle(golden_dir, name, path):
  """A Magenta-style .tar of a golden checkpoint (``<name>.ckpt.*`` inside)."""
  with tarfile.open(path, "w") as tar:
    for suffix in (".index", ".data-00000-of-00001"):
      tar.add(golden_dir / name / f"model.ckpt{suffix}", arcname=f"{name}.ckpt{suffix}")
  return path


def test_cli_imports_a_tar_bundle(golden_dir, tmp_path):
  """By published name from a local .tar: the config is ours of that name, the sizes
  (the golden's reduced ones) come from the checkpoint's shapes."""
  name = "cat-drums_2bar_small"
  bundle = _bundle(golden_dir, name, tmp_path / f"{name}.hikl.tar")
  result = subprocess.run(
      [sys.executable, "-m", "flax_musicvae.import_checkpoint",
       "--name=cat-drums_2bar_small.hikl", f"--source={bundle}",
       f"--workdir={tmp_path}/work", f"--magentajs_dir={tmp_path}/js"],
      cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  from flax_musicvae import workdir as workdir_lib
  params, _ = mi.import_params(bundle, _golden_config(golden_dir, name))
  _params_equal(workdir_lib.load_params(tmp_path / "work",
                                        jax.tree.map(jnp.zeros_like, params))[0], params)
  js_weights, spec = magentajs.read_folder(tmp_path / "js")
  assert spec["dataConverter"]["type"] == "DrumsConverter"
  for tf_name, value in mi.tf_weights(params).items():
    np.testing.assert_array_equal(js_weights[tf_name], value)
  # Export back from the workdir: the same TF1 checkpoint, byte for byte.
  result = subprocess.run(
      [sys.executable, "-m", "flax_musicvae.import_checkpoint", f"--workdir={tmp_path}/work",
       f"--tf_checkpoint={tmp_path}/export/model.ckpt"],
      cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  for suffix in (".index", ".data-00000-of-00001"):
    assert (tmp_path / "export" / f"model.ckpt{suffix}").read_bytes() == (
        golden_dir / name / f"model.ckpt{suffix}").read_bytes()


def test_import_by_name_from_a_url(golden_dir, tmp_path, monkeypatch):
  """--name with an http URL: downloaded once (from a local server) into the cache,
  imported with the sizes read off its shapes; a second import reuses the download."""
  import functools
  import http.server
  import threading
  from flax_musicvae import import_checkpoint, inference
  from flax_musicvae import workdir as workdir_lib
  name = "groovae_4bar"
  served = tmp_path / "served"
  served.mkdir()
  bundle = _bundle(golden_dir, name, served / f"{name}.tar")
  monkeypatch.setattr(inference.loading, "CACHE_DIR", tmp_path / "cache")
  handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=served)
  handler.log_message = lambda *args: None
  server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
  thread = threading.Thread(target=server.serve_forever, daemon=True)
  thread.start()
  try:
    url = f"http://127.0.0.1:{server.server_address[1]}/{name}.tar"
    folder, config = import_checkpoint.import_published("groove_4bar", url, tmp_path / "w1")
    with pytest.raises(cli.UsageError, match="cannot download .*_missing.tar"):
      import_checkpoint.import_published("groove_2bar_humanize", url[:-4] + "_missing.tar",
                                         tmp_path / "w0")
  finally:
    server.shutdown()
    thread.join()
  assert (tmp_path / "cache" / "downloads" / f"{name}.tar").read_bytes() == bundle.read_bytes()
  assert not list((tmp_path / "cache" / "downloads").glob("*.part"))
  assert config.model.z_size == _small_sizes(golden_dir, name)["z_size"]
  want, _ = mi.import_params(bundle, _golden_config(golden_dir, name))
  _params_equal(workdir_lib.load_params(folder.parent.parent,
                                        jax.tree.map(jnp.zeros_like, want))[0], want)
  again, _ = import_checkpoint.import_published("groove_4bar", url, tmp_path / "w2")  # cached
  _params_equal(workdir_lib.load_params(again.parent.parent,
                                        jax.tree.map(jnp.zeros_like, want))[0], want)
  with pytest.raises(cli.UsageError, match="unknown checkpoint name 'groove_5bar'"):
    import_checkpoint.import_published("groove_5bar")


def test_fine_tunes_an_imported_checkpoint_on_groove_data(golden_dir, tmp_path):
  """Import Magenta's checkpoint, then continue training it on real Groove windows."""
  from conftest import FIXTURES
  from flax_musicvae import config_lib, import_checkpoint, train
  from flax_musicvae import workdir as workdir_lib
  from flax_musicvae.pipelines import groove
  config = _golden_config(golden_dir, "groovae_4bar")
  params, _ = mi.import_params(golden_dir / "groovae_4bar", config)
  import_checkpoint.save_to_workdir(params, 0, config, tmp_path / "imported")
  converter = config_lib.make_converter(config.data)
  data = {split: groove.load_groove_split(FIXTURES / "groove", split, converter,
                                          tmp_path / "cache", workers=1)
          for split in ("train", "validation")}
  data = {s: {k: d[k] for k in ("inputs", "outputs", "controls", "lengths")}
          for s, d in data.items()}
  config.train.update(batch_size=8, num_train_steps=20, log_every_steps=10,
                      eval_every_steps=1000, checkpoint_every_steps=1000, eval_samples=0,
                      warm_start_from=str(tmp_path / "imported"))
  config.model.dropout_keep_prob = 1.0
  result = train.train_and_evaluate(config, tmp_path / "tuned", train_data=data["train"],
                                    eval_data=data["validation"])
  tuned, _ = workdir_lib.load_params(tmp_path / "tuned", params)
  distance = lambda a, b: max(float(np.max(np.abs(np.asarray(x) - np.asarray(y))))
                              for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))
  # 20 Adam steps move a weight by at most 20 * lr * (1 - b1) / sqrt(1 - b2) ~ 0.063 from
  # Magenta's values, far less than a fresh initialisation is from them ...
  assert 0 < distance(tuned, params) <= 20 * 1e-3 * 0.1 / np.sqrt(1e-3) * 1.001
  fresh = train._setup(config, data["train"]).state.params
  assert distance(fresh, params) > 0.2
  # ... and the fine-tuned model reconstructs the training windows better than before.
  model = vae.build_model(config)
  batch = {k: jnp.asarray(v[:8]) for k, v in data["train"].items()}
  def r_loss(p):
    out = model.apply({"params": p}, batch, train=False, rngs={"sample": jax.random.PRNGKey(0)})
    return float(jnp.mean(jnp.sum(out["step_loss"], -1)))
  assert np.isfinite(result["eval"]["loss"])
  assert r_loss(tuned) < r_loss(params)
