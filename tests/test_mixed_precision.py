"""bfloat16 mixed precision (``train.compute_dtype``): bf16 matmuls, float32 loss and grads."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flax_musicvae import config_lib
from flax_musicvae import input_pipeline
from flax_musicvae import optim
from flax_musicvae import steps
from flax_musicvae.models import losses
from flax_musicvae.models import lstm
from flax_musicvae.models import vae
from tests.test_train import groove_like
from tests.test_train import groove_subset
from tests.test_train import tiny_config

# bf16 keeps 8 significant bits (relative rounding 2^-9 = 0.2%); the loss sums many such
# roundings that mostly cancel, so 1% of the float32 loss is a loose but meaningful bound.
LOSS_RTOL = 1e-2
GRAD_COSINE = 0.99


def _dot_operand_types(hlo: str) -> list[str]:
  """The operand types of every ``stablehlo.dot_general`` in lowered StableHLO text."""
  return re.findall(r"stablehlo\.dot_general .*?: \((.*?)\) ->", hlo)


def _lowered_train_step(dtype: str) -> str:
  c = tiny_config(compute_dtype=dtype)
  mesh = steps.create_mesh()
  model = vae.build_model(c)
  tx = optim.create_optimizer(c.train)
  state = steps.init_train_state(c, model, tx, groove_like(8, seed=0), mesh)
  step = steps.make_train_step(c, model, tx, mesh)
  return step.lower(state, jax.tree.map(jnp.asarray, groove_like(8, seed=0))).as_text()


def test_train_step_matmuls_run_in_bfloat16_only_when_asked():
  f32 = _dot_operand_types(_lowered_train_step("float32"))
  bf16 = _dot_operand_types(_lowered_train_step("bfloat16"))
  assert f32 and not [t for t in f32 if "bf16" in t]
  # Every matmul of the bf16 step, forward and backward, takes bf16 operands.
  assert bf16 and all(t.count("xbf16>") == 2 for t in bf16), [t for t in bf16 if "f32>" in t]


CASES = {  # name: (config, model overrides, sampling probability)
    "groove_teacher": ("groove_4bar", {}, 0.0),
    "groove_remat_dropout": ("groove_4bar", {"remat": True, "dropout_keep_prob": 0.8}, 0.0),
    "melody_scheduled_sampling": ("cat_mel_2bar_small", {}, 0.5),
    "hierarchical_trio": ("hierdec_trio_16bar", {}, 0.0),
    "nade_drums": ("nade_drums_2bar_reduced", {}, 0.0),
}


def _case(name):
  config_name, overrides, sp = CASES[name]
  c = config_lib.tiny(config_lib.load(config_name), rnn=16, z=8)
  c.model.update(overrides)
  return c, vae.build_model(c), sp


def _batch(spec: vae.ModelSpec, seed: int = 0, bsz: int = 4) -> dict[str, np.ndarray]:
  """Random one-hot/binary outputs (valid for every head) and ragged lengths."""
  rng = np.random.default_rng(seed)
  t = spec.max_seq_len
  outputs = (rng.random((bsz, t, spec.output_depth)) < 0.2).astype(np.float32)
  if spec.head.kind in ("categorical", "multi_out"):
    outputs = np.concatenate([np.eye(d, dtype=np.float32)[rng.integers(0, d, (bsz, t))]
                              for d in spec.head.parts], -1)
  return {"inputs": outputs if spec.input_depth == spec.output_depth
          else rng.random((bsz, t, spec.input_depth)).astype(np.float32),
          "outputs": outputs,
          "controls": rng.random((bsz, t, spec.control_depth)).astype(np.float32),
          "lengths": np.asarray([t, t // 2, 3, t][:bsz], np.int32)}


def _loss_and_grads(c, model, params, batch, sp, dtype):
  def loss_fn(p):
    out = steps.apply_model(model, p, batch, jax.random.PRNGKey(1), train=True,
                       sampling_probability=sp, compute_dtype=jnp.dtype(dtype))
    return losses.compute_loss(out, batch, 0, c.model)[0]
  return jax.jit(jax.value_and_grad(loss_fn))(params)


def _cosine(a, b) -> float:
  a, b = np.ravel(a).astype(np.float64), np.ravel(b).astype(np.float64)
  return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.mark.parametrize("name", list(CASES))
def test_bfloat16_loss_and_gradients_match_float32(name):
  c, model, sp = _case(name)
  batch = _batch(model.spec)
  params = model.init({"params": jax.random.PRNGKey(0), "dropout": jax.random.PRNGKey(1),
                       "sample": jax.random.PRNGKey(2)}, batch, train=False)["params"]
  loss32, grads32 = _loss_and_grads(c, model, params, batch, sp, "float32")
  loss16, grads16 = _loss_and_grads(c, model, params, batch, sp, "bfloat16")
  assert np.isfinite(loss16)
  np.testing.assert_allclose(loss16, loss32, rtol=LOSS_RTOL)
  leaves32, leaves16 = jax.tree.leaves(grads32), jax.tree.leaves(grads16)
  assert all(g.dtype == jnp.float32 for g in leaves16)
  flat = lambda leaves: np.concatenate([np.ravel(g) for g in leaves])
  assert _cosine(flat(leaves16), flat(leaves32)) > GRAD_COSINE
  # Per parameter too (a bias gradient summed in bf16 over batch x time would fail here).
  for path, g32 in jax.tree_util.tree_leaves_with_path(grads32):
    g16 = dict(jax.tree_util.tree_leaves_with_path(grads16))[path]
    if np.linalg.norm(g32) > 1e-6:
      assert _cosine(g16, g32) > GRAD_COSINE, jax.tree_util.keystr(path)


@pytest.mark.parametrize("remat", [False, True])
def test_lstm_layer_bfloat16_gradients(remat):
  """The custom VJP (remat=False) and autodiff (remat=True) in bf16: cotangents have their
  primals' dtypes and agree with the float32 gradients."""
  keys = jax.random.split(jax.random.PRNGKey(0), 5)
  b, t, d, h = 3, 12, 5, 8
  p = {"kernel": jax.random.normal(keys[0], (d + h, 4 * h)) * 0.4,
       "bias": jax.random.normal(keys[1], (4 * h,)) * 0.1}
  xs = jax.random.normal(keys[2], (b, t, d))
  c0, h0 = (jax.random.normal(k, (b, h)) * 0.5 for k in keys[3:5])
  w_out = jax.random.normal(jax.random.PRNGKey(9), (b, t, h))
  lengths = jnp.asarray([t, 7, 1])

  def loss(p, xs, c0, h0):
    out, (c, hf) = lstm.run_layer(p, xs, lengths, initial=(c0, h0), remat=remat)
    assert c.dtype == jnp.float32 and hf.dtype == xs.dtype == out.dtype
    return (jnp.sum(out.astype(jnp.float32) * w_out) + jnp.sum(c * c0)
            + jnp.sum(hf.astype(jnp.float32)))

  grad = jax.jit(jax.grad(loss, argnums=(0, 1, 2, 3)))
  ref = grad(p, xs, c0, h0)
  low = grad(p, xs.astype(jnp.bfloat16), c0, h0.astype(jnp.bfloat16))
  assert [g.dtype for g in jax.tree.leaves(low)] == [
      jnp.float32, jnp.float32, jnp.bfloat16, jnp.float32, jnp.bfloat16]
  for g16, g32 in zip(jax.tree.leaves(low), jax.tree.leaves(ref)):
    assert _cosine(g16, g32) > 0.999


@pytest.mark.slow
def test_bfloat16_training_reduces_loss_on_real_groove(groove_dir, tmp_path):
  """30 bf16 train steps on 16 real 4-bar Groove windows lower their training loss."""
  c = config_lib.tiny(config_lib.load("groove_4bar"), rnn=32, z=16)
  c.data.path = str(groove_subset(groove_dir, tmp_path / "groove", {"train": 4}))
  c.data.cache_dir = str(tmp_path / "cache")
  c.train.update(batch_size=16, compute_dtype="bfloat16")
  data = input_pipeline.load_split(c, "train")
  batch = jax.tree.map(lambda x: jnp.asarray(x[:16]), data)
  assert batch["outputs"].shape[0] == 16
  mesh = steps.create_mesh()
  model = vae.build_model(c)
  tx = optim.create_optimizer(c.train)
  state = steps.init_train_state(c, model, tx, data, mesh)
  step = steps.make_train_step(c, model, tx, mesh)
  history = []
  for _ in range(30):
    state, metrics = step(state, batch)
    history.append(float(metrics["loss"]))
  assert all(np.isfinite(history))
  assert all(g.dtype == jnp.float32 for g in jax.tree.leaves(state.params))
  print("bf16 training loss", history[0], "->", history[-1])
  assert np.mean(history[-5:]) < 0.8 * np.mean(history[:5]), history


def test_bfloat16_loss_uses_full_precision_targets():
  c, model, _ = _case("groove_teacher")
  batch = _batch(model.spec, seed=3)
  rng = np.random.default_rng(3)
  batch["outputs"] = batch["outputs"] * rng.uniform(0.1, 1.0, batch["outputs"].shape).astype(
      np.float32)        # velocities/offsets that bf16 cannot represent exactly
  batch["inputs"] = batch["outputs"]
  rounded = dict(batch, outputs=batch["outputs"].astype(jnp.bfloat16).astype(np.float32))
  assert not np.array_equal(rounded["outputs"], batch["outputs"])
  params = jax.jit(lambda k: model.init({"params": k}, batch, train=False))(
      jax.random.PRNGKey(0))["params"]
  run = lambda b: steps.apply_model(model, params, b, jax.random.PRNGKey(1), train=False,  # noqa: E731
                               sampling_probability=0.0, compute_dtype=jnp.dtype("bfloat16"))
  full, coarse = run(batch), run(rounded)
  # The decoder sees bf16 inputs either way, so the logits agree; only the targets differ.
  np.testing.assert_array_equal(full["logits"], coarse["logits"])
  expected, _ = losses.step_losses(model.spec.head, None, full["logits"], batch["outputs"])
  np.testing.assert_allclose(full["step_loss"], expected, rtol=1e-6)
  assert not np.allclose(full["step_loss"], coarse["step_loss"], rtol=1e-6)
