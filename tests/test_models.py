"""Model behaviour not covered by the goldens, checked against the reference notes by hand."""

import functools
import itertools
import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from flax_musicvae import config_lib
from flax_musicvae import schedules
from flax_musicvae.models import losses
from flax_musicvae.models import nade
from flax_musicvae.models import sampling
from flax_musicvae.models import vae

jax.config.update("jax_default_matmul_precision", "highest")
RNGS = {k: jax.random.PRNGKey(i) for i, k in enumerate(("params", "dropout", "sample"))}


def tiny_model(name, **model):
  c = config_lib.tiny(config_lib.load(name))
  for k, v in model.items():
    c.model[k] = v
  return c, vae.build_model(c)


def random_batch(spec, bsz=3, seed=0, lengths=None):
  rng = np.random.default_rng(seed)
  t = spec.max_seq_len
  onehot = lambda d: np.eye(d, dtype=np.float32)[rng.integers(0, d, (bsz, t))]
  return {"inputs": rng.random((bsz, t, spec.input_depth)).astype(np.float32),
          "outputs": onehot(spec.output_depth),
          "controls": rng.random((bsz, t, spec.control_depth)).astype(np.float32),
          "lengths": np.full((bsz,), t, np.int32) if lengths is None
          else np.asarray(lengths, np.int32)}


def init(model, batch):
  return jax.jit(lambda b: model.init(RNGS, b, train=False))(batch)


# ---- schedules and loss --------------------------------------------------------------


def _cfg(**kw):
  return ml_collections.ConfigDict(dict(dict(beta_rate=0.0, max_beta=0.2, free_bits=0.0,
                                             sampling_schedule="constant",
                                             sampling_rate=0.0), **kw))


def test_beta_schedule():
  assert float(schedules.beta(0, _cfg())) == 0.0            # 0**0 == 1
  assert float(schedules.beta(1, _cfg())) == pytest.approx(0.2)
  cfg = _cfg(beta_rate=0.99999, max_beta=0.5)
  f32 = np.float32   # float32 like tf.pow in Magenta
  expected = (f32(1) - np.power(f32(0.99999), f32(1000))) * f32(0.5)
  assert float(schedules.beta(1000, cfg)) == pytest.approx(float(expected), 1e-5)


@pytest.mark.parametrize("schedule,rate,step,expected", [
    ("constant", 0.3, 50, 0.3),
    ("exponential", 0.9, 10, 1 - 0.9 ** 10),
    ("inverse_sigmoid", 1000, 2000, 1 - 1000 / (1000 + math.exp(2.0))),
    ("inverse_sigmoid", 1000, 0, 1 - 1000 / 1001),
])
def test_sampling_probability_schedules(schedule, rate, step, expected):
  cfg = _cfg(sampling_schedule=schedule, sampling_rate=rate)
  assert float(schedules.sampling_probability(step, cfg, True)) == pytest.approx(expected, abs=1e-6)
  assert schedules.sampling_probability(step, cfg, False) == 1.0   # eval: free running


def test_sampling_probability_without_schedule_and_bad_rates():
  assert schedules.sampling_probability(10, _cfg(), True) == 0.0
  assert schedules.sampling_probability(10, _cfg(), False) == 0.0
  for schedule, rate in (("constant", 2.0), ("exponential", 1.0), ("inverse_sigmoid", 0.5),
                         ("linear", 0.5)):
    with pytest.raises(ValueError):
      schedules.sampling_probability(1, _cfg(sampling_schedule=schedule, sampling_rate=rate),
                                     True)


def test_compute_loss_free_bits_on_total_kl_and_beta():
  free_bits = 2.0
  kl = jnp.array([3.0, 0.5])                                 # nats; free nats = 2 ln 2
  outputs = {"mask": jnp.array([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]]),
             "step_loss": jnp.array([[1.0, 2.0, 50.0], [4.0, 60.0, 70.0]]),
             "kl": kl, "step_correct": jnp.array([[1.0, 0.0, 1.0], [1.0, 0.0, 0.0]])}
  cfg = _cfg(free_bits=free_bits, max_beta=0.5)
  loss, m = losses.compute_loss(outputs, {}, 7, cfg)
  kl_cost = np.maximum(np.array([3.0, 0.5]) - 2 * math.log(2), 0)   # [1.6137, 0]
  assert float(m["r_loss"]) == pytest.approx((3.0 + 4.0) / 2)
  assert float(m["kl_loss"]) == pytest.approx(kl_cost.mean(), 1e-6)
  assert float(m["kl_bits"]) == pytest.approx(float(kl.mean()) / math.log(2), 1e-6)
  assert float(loss) == pytest.approx(3.5 + 0.5 * kl_cost.mean(), 1e-6)
  assert float(m["accuracy"]) == pytest.approx(2 / 3)


def test_groove_step_loss_by_hand():
  head = vae.ModelSpec(27, 27, 0, 4, (8,), (8,), 4, decoder="groove").head
  logits = jnp.zeros((1, 1, 27)).at[0, 0, 0].set(100.0)     # hit 0 prob ~1, others 0.5
  target = jnp.zeros((1, 1, 27)).at[0, 0, 1].set(1.0).at[0, 0, 9].set(1.0)
  loss, m = losses.step_losses(head, None, logits, target)
  # hit 0: target 0 but p = sigmoid(100) = 1 -> -log(1 - 1 + eps); 8 others at p = 0.5.
  hits = -math.log(1e-7) + 8 * -math.log(0.5 + 1e-7)
  vel = (1 - 0.5) ** 2 + 8 * 0.5 ** 2
  assert float(m["step_hits_loss"][0, 0]) == pytest.approx(hits, 1e-4)
  assert float(m["step_velocities_loss"][0, 0]) == pytest.approx(vel)
  assert float(m["step_offsets_loss"][0, 0]) == 0.0
  assert float(loss[0, 0]) == pytest.approx(hits + vel, 1e-4)


# ---- NADE ----------------------------------------------------------------------------


def _nade_setup(d=4, h=3, n=2, seed=0):
  rng = np.random.default_rng(seed)
  p = {"w_enc": jnp.asarray(rng.normal(size=(d, 1, h)), jnp.float32),
       "w_dec_t": jnp.asarray(rng.normal(size=(d, h, 1)), jnp.float32)}
  return p, jnp.asarray(rng.normal(size=(n, h)), jnp.float32), \
      jnp.asarray(rng.normal(size=(n, d)), jnp.float32)


def _brute_log_prob(p, x, b_enc, b_dec):
  w_enc, w_dec = np.asarray(p["w_enc"])[:, 0], np.asarray(p["w_dec_t"])[..., 0]
  a, lp = np.asarray(b_enc, np.float64), 0.0
  for i, v in enumerate(x):
    q = 1 / (1 + np.exp(-(b_dec[i] + (1 / (1 + np.exp(-a))) @ w_dec[i])))
    lp += math.log((q if v else 1 - q) + 1e-6)
    a = a + v * w_enc[i]
  return lp


def test_nade_log_prob_matches_brute_force_and_normalises():
  p, b_enc, b_dec = _nade_setup()
  xs = jnp.asarray(list(itertools.product([0.0, 1.0], repeat=4)), jnp.float32)
  for b in range(2):
    lp, cond = nade.log_prob(p, xs, jnp.repeat(b_enc[b:b + 1], 16, 0),
                             jnp.repeat(b_dec[b:b + 1], 16, 0))
    ref = [_brute_log_prob(p, np.asarray(x), np.asarray(b_enc[b]), np.asarray(b_dec[b]))
           for x in xs]
    np.testing.assert_allclose(lp, ref, rtol=1e-5)
    assert float(jnp.exp(lp).sum()) == pytest.approx(1.0, abs=1e-4)
    assert cond.shape == (16, 4)


def test_nade_sampling_threshold_and_distribution():
  p, b_enc, b_dec = _nade_setup(d=3, n=1, seed=1)
  greedy = nade.sample(p, b_enc, b_dec, None, None)
  _, cond = nade.log_prob(p, greedy, b_enc, b_dec)
  np.testing.assert_array_equal(greedy, (cond >= 0.5).astype(np.float32))  # self-consistent
  n = 20000
  draws = nade.sample(p, jnp.repeat(b_enc, n, 0), jnp.repeat(b_dec, n, 0),
                      nade.uniform_noise(jax.random.PRNGKey(0), n, 3), 1.0)
  codes = (np.asarray(draws) @ np.array([4, 2, 1])).astype(int)
  xs = jnp.asarray(list(itertools.product([0.0, 1.0], repeat=3)), jnp.float32)
  lp, _ = nade.log_prob(p, xs, jnp.repeat(b_enc, 8, 0), jnp.repeat(b_dec, 8, 0))
  np.testing.assert_allclose(np.bincount(codes, minlength=8) / n, np.exp(lp), atol=0.015)


# ---- decoding modes ------------------------------------------------------------------


def test_teacher_path_equals_stepwise_with_no_sampling():
  for name in ("cat_drums_2bar_small", "hierdec_trio_16bar"):
    c, model = tiny_model(name)
    batch = random_batch(model.spec, lengths=None)
    variables = init(model, batch)
    z = jax.random.normal(jax.random.PRNGKey(5), (3, c.model.z_size))

    def both(m, z, batch):
      x_input, _, lengths, controls = m._targets(batch)
      dec = m.decoder()
      teacher, _ = dec.teacher(z, x_input, controls, lengths, None)
      select = jnp.zeros(x_input.shape[:2], bool)
      step = dec.stepwise(z, x_input, controls, select, x_input[:, 0],
                          sampling.KeySampler(jax.random.PRNGKey(0), 1.0), None)["logits"]
      return teacher, step
    teacher, step = model.apply(variables, z, batch, method=both)
    np.testing.assert_allclose(teacher, step, atol=1e-5)


def test_scheduled_sampling_p1_ignores_ground_truth():
  c, model = tiny_model("cat_mel_2bar_small")
  batch = random_batch(model.spec, seed=1)
  other = dict(batch, outputs=random_batch(model.spec, seed=2)["outputs"])
  variables = init(model, batch)
  run = jax.jit(lambda b, p: model.apply(variables, b, train=True, sampling_probability=p,
                                         rngs=RNGS)["logits"])
  np.testing.assert_allclose(run(batch, 1.0), run(other, 1.0), atol=1e-6)
  assert not np.allclose(run(batch, 0.0), run(other, 0.0), atol=1e-3)
  teacher = model.apply(variables, batch, train=True, rngs=RNGS)["logits"]
  np.testing.assert_allclose(run(batch, 0.0), teacher, atol=1e-5)  # traced p=0 == teacher


def test_dropout_only_in_training():
  c, model = tiny_model("groove_2bar_humanize")
  assert c.model.dropout_keep_prob == 0.3
  batch = random_batch(model.spec)
  variables = init(model, batch)
  fixed = {"sample": jax.random.PRNGKey(0)}
  run = lambda train, seed: model.apply(variables, batch, train=train, rngs=dict(
      fixed, dropout=jax.random.PRNGKey(seed)))["logits"]
  np.testing.assert_array_equal(run(False, 1), run(False, 2))
  assert not np.allclose(run(True, 1), run(True, 2))


def test_controls_concatenated_to_encoder_and_decoder_inputs():
  c, model = tiny_model("groove_2bar_hits_control_tfds")
  spec = model.spec
  assert spec.control_depth == 9
  batch = random_batch(spec, bsz=2)
  params = init(model, batch)["params"]
  # Encoder input = concat(inputs, controls): same as a control-free model fed the concat.
  no_ctrl = vae.build_model(config_lib.tiny(config_lib.load("groove_2bar_humanize")))
  no_ctrl = no_ctrl.clone(spec=no_ctrl.spec.__class__(**dict(
      vars(spec), input_depth=spec.input_depth + 9, control_depth=0)))
  cat_batch = dict(batch, inputs=np.concatenate([batch["inputs"], batch["controls"]], -1),
                   controls=batch["controls"][..., :0])
  enc = lambda m, p, b: m.apply({"params": p}, b, method="encode")
  enc_params = {k: v for k, v in params.items() if k != "decoder"}
  enc_params["decoder"] = init(no_ctrl, cat_batch)["params"]["decoder"]
  np.testing.assert_allclose(enc(model, params, batch)[0],
                             enc(no_ctrl, enc_params, cat_batch)[0], atol=1e-6)
  # Decoder step input = concat(previous target, z, controls[t]): numpy reference.
  z = np.random.default_rng(3).normal(size=(2, spec.z_size)).astype(np.float32)
  logits = model.apply({"params": params}, jnp.asarray(z), batch, method="decode")
  np.testing.assert_allclose(logits, _numpy_flat_decode(params["decoder"], z, batch),
                             atol=1e-5)


def _numpy_flat_decode(p, z, batch):
  sig = lambda x: 1 / (1 + np.exp(-x))
  x_in = np.pad(batch["outputs"][:, :-1], ((0, 0), (1, 0), (0, 0)))
  layers = [p["multi_rnn_cell"][k]["lstm_cell"] for k in sorted(p["multi_rnn_cell"])]
  s = np.tanh(z @ p["z_to_initial_state"]["kernel"] + p["z_to_initial_state"]["bias"])
  sizes = [l["bias"].shape[0] // 4 for l in layers]
  state = [(s[:, sum(sizes[:i]) * 2:][:, :n], s[:, sum(sizes[:i]) * 2 + n:][:, :n])
           for i, n in enumerate(sizes)]
  out = []
  for t in range(x_in.shape[1]):
    x = np.concatenate([x_in[:, t], z, batch["controls"][:, t]], -1)
    for i, l in enumerate(layers):
      c, h = state[i]
      ig, j, f, o = np.split(np.concatenate([x, h], -1) @ l["kernel"] + l["bias"], 4, -1)
      c = sig(f + 1) * c + sig(ig) * np.tanh(j)
      h = sig(o) * np.tanh(c)
      state[i], x = (c, h), h
    out.append(x @ p["output_projection"]["kernel"] + p["output_projection"]["bias"])
  return np.stack(out, 1)


def test_sampling_temperature_keys_and_end_token():
  c, model = tiny_model("cat_mel_2bar_small")
  batch = random_batch(model.spec)
  params = init(model, batch)["params"]
  z = jax.random.normal(jax.random.PRNGKey(1), (3, c.model.z_size))
  @functools.partial(jax.jit, static_argnames=("temperature", "end_token"))
  def sample(key, temperature=1.0, end_token=None):
    return model.apply({"params": params}, z, method="sample", rngs={"sample": key},
                       temperature=temperature, end_token=end_token)

  a, b = sample(jax.random.PRNGKey(0)), sample(jax.random.PRNGKey(0))
  np.testing.assert_array_equal(a["outputs"], b["outputs"])
  np.testing.assert_array_equal(a["outputs"].sum(-1), 1.0)          # one-hot steps
  cold = sample(jax.random.PRNGKey(0), temperature=1e-6)
  greedy = sample(jax.random.PRNGKey(9), temperature=None)
  np.testing.assert_array_equal(cold["outputs"], greedy["outputs"])
  hot = sample(jax.random.PRNGKey(1), temperature=50.0)
  assert not np.array_equal(hot["outputs"], greedy["outputs"])
  # End token: take the greedy token at step 3 of example 0; decoding stops after it.
  end = int(np.argmax(greedy["outputs"][0, 3]))
  res = sample(jax.random.PRNGKey(0), temperature=None, end_token=end)
  first = np.argmax(np.asarray(greedy["outputs"]).argmax(-1) == end, axis=1)
  hit = (np.asarray(greedy["outputs"]).argmax(-1) == end).any(1)
  expected = np.where(hit, first + 1, c.model.max_seq_len)
  np.testing.assert_array_equal(res["lengths"], expected)
  for b, n in enumerate(expected):
    np.testing.assert_array_equal(res["outputs"][b, n:], 0.0)
    np.testing.assert_array_equal(res["outputs"][b, :n], greedy["outputs"][b, :n])


def test_hierarchical_encoder_composes_level_encoders():
  c, model = tiny_model("hier_mel_16bar")
  batch = random_batch(model.spec, bsz=2, lengths=[256, 100])
  params = init(model, batch)["params"]
  mu = model.apply({"params": params}, batch, method="encode")[0]
  from flax_musicvae.models import encoders, decoders
  enc = params["encoder"]
  lvl = lambda k, in_size: encoders.BidirectionalEncoder(c.model.enc_rnn_size, in_size)
  x = jnp.asarray(batch["inputs"]).reshape(32, 16, -1)
  seg_len = jnp.clip(jnp.array([256, 100])[:, None] - jnp.arange(16) * 16, 0, 16).reshape(-1)
  e0 = lvl(0, 90).apply({"params": enc["level_0"]}, x, seg_len, None).reshape(2, 16, -1)
  e1 = lvl(1, 16).apply({"params": enc["level_1"]}, e0, None, None)
  ref = e1 @ params["mu"]["kernel"] + params["mu"]["bias"]
  np.testing.assert_allclose(mu, ref, atol=1e-6)
  del decoders


def test_autoregressive_conductor_and_multi_out_metrics():
  c, model = tiny_model("hierdec_mel_16bar", disable_autoregression=False)
  batch = random_batch(model.spec, bsz=2)
  variables = init(model, batch)
  kernel = variables["params"]["decoder"]["hierarchical_level_0"]["cell_0"]["lstm_cell"]["kernel"]
  assert kernel.shape[0] == c.model.z_size + 2 * 2 * 8 + 8  # (z, core c/h x 2 layers) + h
  out = model.apply(variables, batch, train=False, rngs=RNGS)
  assert np.isfinite(out["logits"]).all()
  c, model = tiny_model("flat_trio_16bar")
  batch = random_batch(model.spec, bsz=2)
  out = model.apply(init(model, batch), batch, train=False, rngs=RNGS)
  _, m = losses.compute_loss(out, batch, 0, c.model)
  assert {"accuracy/output_0", "accuracy/output_1", "accuracy/output_2"} <= set(m)
  assert float(m["accuracy"]) == pytest.approx(np.mean(
      [float(m[f"accuracy/output_{i}"]) for i in range(3)]), 1e-6)
