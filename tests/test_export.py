"""Export: the noise-input sampler equals the model's, SavedModel / LiteRT parity with JAX."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flax_musicvae import config_lib
from flax_musicvae.export import bundle
from flax_musicvae.export import signatures
from flax_musicvae.models import build_model
from flax_musicvae.models.vae import MusicVAE

#: config -> decoder family; every exported family.
FAMILIES = {
    "cat_mel_2bar_small": "categorical melody",
    "cat_drums_2bar_small": "categorical drums",
    "groove_2bar_humanize": "groove",
    "groove_2bar_hits_control_tfds": "groove with hit controls",
    "hierdec_mel_16bar": "hierarchical",
    "flat_trio_16bar": "multi-out",
    "hierdec_trio_16bar": "hierarchical split",
}
#: Families whose fp16 / int8 files are checked (wide enough for weights to be quantized).
QUANTIZED = ("cat_mel_2bar_small", "cat_drums_2bar_small", "groove_2bar_humanize")
#: Measured on these models (3 seeds x 16 examples, temperature 1): fp16 logit error
#: <= 3.1e-4 with every token / hit equal; int8 logit error <= 6.8e-3 up to the first
#: differently sampled step, 15/16 examples or more sampled identically. Bounds:
#: (logit atol, minimum fraction of identically sampled examples), with 3-10x margin.
BOUNDS = {"fp32": (1e-4, 1.0), "fp16": (2e-3, 0.75), "int8": (3e-2, 0.5)}
BATCH = 4
TEMPERATURE = 0.8
#: Jitted (eager op-by-op dispatch of these small models is far slower than compiling).
noise_from_key = jax.jit(signatures.noise_from_key, static_argnums=(0, 2))


def jitted_decode(model):
  return jax.jit(lambda *args: signatures.decode_with_noise(model, *args))


def jitted_model_sample(model, temperature):
  return jax.jit(lambda params, z, controls, key: model.apply(
      {"params": params}, z, temperature=temperature, controls=controls,
      method=MusicVAE.sample, rngs={"sample": key}))


def load_config(name: str, quantized: bool = False):
  """Config ``name`` at toy widths (wider for the quantized exports)."""
  return config_lib.tiny(config_lib.load(name), rnn=32 if quantized else 8, z=8)


def controls_for(sp, batch: int, seed: int = 0):
  if not sp.control_depth:
    return None
  rng = np.random.default_rng(seed)
  return (rng.random((batch, sp.max_seq_len, sp.control_depth)) < 0.3).astype(np.float32)


def model_and_params(name: str, quantized: bool = False):
  model = build_model(load_config(name, quantized))
  return model, bundle.init_params(model, seed=1)


def sample_key_used(model, params, key):
  """The key ``MusicVAE.sample`` hands to its decoder (its first ``make_rng('sample')``)."""
  return model.apply({"params": params}, method=lambda m: m.make_rng("sample"),
                     rngs={"sample": key})


def assert_noise_sampler_equals_model_sampler(model, params):
  sp = model.spec
  z = jax.random.normal(jax.random.PRNGKey(3), (BATCH, sp.z_size))
  controls = controls_for(sp, BATCH)
  key = jax.random.PRNGKey(7)
  ref = jitted_model_sample(model, TEMPERATURE)(params, z, controls, key)
  noise = noise_from_key(sp, sample_key_used(model, params, key), BATCH)
  decode = jitted_decode(model)
  out = decode(params, z, noise, TEMPERATURE, controls)
  np.testing.assert_array_equal(out["outputs"], ref["outputs"])
  np.testing.assert_allclose(out["logits"], ref["logits"], atol=1e-6)
  # The samples are not degenerate: a different key changes them.
  other = noise_from_key(sp, jax.random.PRNGKey(8), BATCH)
  changed = decode(params, z, other, TEMPERATURE, controls)
  assert not np.array_equal(changed["outputs"], out["outputs"])


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_noise_sampler_equals_model_sampler(name):
  assert_noise_sampler_equals_model_sampler(*model_and_params(name))


def test_noise_sampler_autoregressive_conductor():
  config = load_config("hierdec_trio_16bar")
  config.model.disable_autoregression = False
  model = build_model(config)
  assert_noise_sampler_equals_model_sampler(model, bundle.init_params(model, seed=1))


@pytest.mark.parametrize("name", ["cat_mel_2bar_small", "groove_2bar_humanize",
                                  "hierdec_trio_16bar"])
def test_neutral_noise_is_greedy(name):
  model, params = model_and_params(name)
  sp = model.spec
  z = jax.random.normal(jax.random.PRNGKey(4), (BATCH, sp.z_size))
  ref = jitted_model_sample(model, None)(params, z, None, jax.random.PRNGKey(0))
  neutral = 0.5 if signatures.noise_kind(sp) == "uniform" else 0.0
  noise = jnp.full((BATCH, sp.max_seq_len, signatures.noise_depth(sp)), neutral)
  out = jitted_decode(model)(params, z, noise, 1.0, None)
  np.testing.assert_array_equal(out["outputs"], ref["outputs"])


def test_tokens_are_the_argmax_of_each_part():
  model, params = model_and_params("flat_trio_16bar")
  sp = model.spec
  noise = noise_from_key(sp, jax.random.PRNGKey(0), 2)
  out = jitted_decode(model)(params, jnp.zeros((2, sp.z_size)), noise, 1.0, None)
  mel, bass, drums = np.split(np.asarray(out["outputs"]), [90, 180], -1)
  expected = np.stack([mel.argmax(-1), bass.argmax(-1), drums.argmax(-1)], -1)
  np.testing.assert_array_equal(out["tokens"], expected)


def test_bad_inputs_raise():
  model, params = model_and_params("cat_mel_2bar_small")
  sp = model.spec
  with pytest.raises(ValueError, match="noise shape"):
    signatures.decode_with_noise(model, params, jnp.zeros((2, sp.z_size)),
                                 jnp.zeros((2, 3, 4)), 1.0)
  nade = build_model(load_config("nade_drums_2bar_reduced"))
  with pytest.raises(NotImplementedError, match="NADE"):
    signatures.check_exportable(nade.spec)


# ----------------------------------------------------------------------------- TF / LiteRT


def jax_reference(model, params, inputs: dict[str, np.ndarray]) -> dict[str, dict]:
  """Every signature's JAX outputs on ``inputs`` (name -> array)."""
  specs = signatures.input_specs(model.spec, BATCH)
  fns = {k: jax.jit(f) for k, f in signatures.functions(model).items()}
  return {name: jax.tree.map(np.asarray, fns[name](params, *[inputs[s.name]
                                                             for s in specs[name]]))
          for name in signatures.SIGNATURES}


def make_inputs(model, params, seed: int) -> dict[str, np.ndarray]:
  sp = model.spec
  rng = np.random.default_rng(seed)
  sample_noise = noise_from_key(sp, jax.random.PRNGKey(seed), BATCH)
  x = rng.integers(0, sp.input_depth, (BATCH, sp.max_seq_len))
  inputs = {"inputs": np.eye(sp.input_depth, dtype=np.float32)[x],
            "lengths": np.array([sp.max_seq_len, sp.max_seq_len // 2, 5, sp.max_seq_len]
                                [:BATCH], np.int32),
            "z": rng.standard_normal((BATCH, sp.z_size)).astype(np.float32),
            "z_noise": rng.standard_normal((BATCH, sp.z_size)).astype(np.float32),
            "noise": np.asarray(sample_noise),
            "temperature": np.float32(TEMPERATURE)}
  controls = controls_for(sp, BATCH, seed)
  if controls is not None:
    inputs["controls"] = controls
  return inputs


def discrete(sp, out: dict[str, np.ndarray]) -> np.ndarray:
  """Sampled tokens ``[B, T, parts]`` (categorical) or hits ``[B, T, drums]`` (groove)."""
  if sp.head.kind == "groove":
    return out["outputs"][..., :sp.output_depth // 3]
  return out["tokens"]


def assert_flip_within_bound(sp, logits, noise, got, want, atol) -> None:
  """A differently sampled token / hit needs the float decision to be within ``atol``.

  Up to that step the logits of both runs differ by at most ``atol``; a categorical flip
  then needs the float scores ``logits / T + g`` of both classes within ``2 atol / T``, a
  groove flip ``u`` within ``atol / (4 T)`` of ``sigmoid(logit / T)``.
  """
  t = TEMPERATURE
  if sp.head.kind == "groove":
    p = 1 / (1 + np.exp(-logits[:sp.output_depth // 3] / t))
    assert np.all(np.abs(noise - p)[got != want] <= atol / (4 * t) + 1e-7)
    return
  bounds = np.cumsum((0,) + sp.head.parts)
  for i in np.flatnonzero(got != want):
    scores = logits[bounds[i]:bounds[i + 1]] / t + noise[bounds[i]:bounds[i + 1]]
    assert abs(scores[want[i]] - scores[got[i]]) <= 2 * atol / t + 1e-6


def check_close(sp, got: dict, want: dict, quantization: str, noise: np.ndarray) -> None:
  """Exported outputs against JAX within the bounds of ``quantization``.

  Sampling is autoregressive, so after a differently sampled step the runs diverge:
  logits are compared up to and including the first differing step, and that
  difference must be explained by the logit error (``assert_flip_within_bound``).
  """
  atol, min_identical = BOUNDS[quantization]
  for k in ("mu", "sigma"):
    np.testing.assert_allclose(got["encode"][k], want["encode"][k], atol=atol)
  for name in ("decode", "sample"):
    g, w = discrete(sp, got[name]), discrete(sp, want[name])
    step_same = (g == w).all(-1)
    assert step_same.all(-1).mean() >= min_identical, (name, step_same.all(-1))
    for b in range(BATCH):
      first = sp.max_seq_len if step_same[b].all() else int(np.argmin(step_same[b]))
      upto = min(first + 1, sp.max_seq_len)
      np.testing.assert_allclose(got[name]["logits"][b, :upto],
                                 want[name]["logits"][b, :upto], atol=atol)
      if first < sp.max_seq_len:
        assert_flip_within_bound(sp, want[name]["logits"][b, first], noise[b, first],
                                 g[b, first], w[b, first], atol)
    if sp.head.kind == "groove" and quantization == "fp32":
      np.testing.assert_allclose(got[name]["outputs"], want[name]["outputs"], atol=1e-5)


def run_tflite(path, inputs: dict[str, np.ndarray]) -> dict[str, dict]:
  from ai_edge_litert.interpreter import Interpreter
  interpreter = Interpreter(model_path=str(path))
  out = {}
  for name, sig in interpreter.get_signature_list().items():
    runner = interpreter.get_signature_runner(name)
    out[name] = runner(**{k: inputs[k] for k in sig["inputs"]})
  return out


def run_saved_model(path, inputs: dict[str, np.ndarray]) -> dict[str, dict]:
  import tensorflow as tf
  loaded = tf.saved_model.load(str(path))
  out = {}
  for name, fn in loaded.signatures.items():
    args = fn.structured_input_signature[1]
    out[name] = {k: v.numpy() for k, v in fn(**{k: inputs[k] for k in args}).items()}
  return out


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def exported(request, tmp_path_factory):
  pytest.importorskip("tensorflow")
  pytest.importorskip("ai_edge_litert")
  name = request.param
  quantized = name in QUANTIZED
  config = load_config(name, quantized)
  model = build_model(config)
  params = bundle.init_params(model, seed=1)
  out_dir = tmp_path_factory.mktemp(name)
  quantizations = ("fp32", "fp16", "int8") if quantized else ("fp32",)
  meta = bundle.export_bundle(config, params, out_dir, BATCH, quantizations)
  return model, params, out_dir, meta


@pytest.mark.tf
def test_saved_model_matches_jax(exported):
  model, params, out_dir, _ = exported
  inputs = make_inputs(model, params, seed=0)
  got = run_saved_model(out_dir / bundle.SAVED_MODEL_DIR, inputs)
  assert sorted(got) == sorted(signatures.SIGNATURES)
  check_close(model.spec, got, jax_reference(model, params, inputs), "fp32",
              inputs["noise"])


@pytest.mark.tf
def test_tflite_matches_jax(exported):
  model, params, out_dir, meta = exported
  for seed in (0, 1):
    inputs = make_inputs(model, params, seed)
    want = jax_reference(model, params, inputs)
    for q in [f["quantization"] for f in meta["files"].values() if "quantization" in f]:
      check_close(model.spec, run_tflite(out_dir / bundle.tflite_name(q), inputs), want, q,
                  inputs["noise"])


@pytest.mark.tf
def test_metadata_describes_the_tflite_signatures(exported):
  model, _, out_dir, meta = exported
  from ai_edge_litert.interpreter import Interpreter
  on_disk = json.loads((out_dir / bundle.METADATA_FILE).read_text())
  assert on_disk == meta
  assert meta["batch_size"] == BATCH and meta["steps"] == model.spec.max_seq_len
  assert sum(t["depth"] for t in meta["tracks"]) == model.spec.output_depth
  interpreter = Interpreter(model_path=str(out_dir / bundle.tflite_name("fp32")))
  for name, sig in meta["signatures"].items():
    runner = interpreter.get_signature_runner(name)
    for kind, details in (("inputs", runner.get_input_details()),
                          ("outputs", runner.get_output_details())):
      assert {k: list(v["shape"]) for k, v in details.items()} == {
          k: v["shape"] for k, v in sig[kind].items()}, (name, kind)


@pytest.mark.tf
def test_quantized_files_are_smaller(exported):
  _, _, out_dir, meta = exported
  sizes = {f["quantization"]: f["bytes"] for f in meta["files"].values()
           if "quantization" in f}
  for q, size in sizes.items():
    assert (out_dir / bundle.tflite_name(q)).stat().st_size == size
  if "int8" in sizes:
    assert sizes["int8"] < 0.75 * sizes["fp32"] and sizes["fp16"] < 0.75 * sizes["fp32"]


@pytest.mark.tf
def test_cli_exports_a_training_workdir(tmp_path, capsys):
  pytest.importorskip("tensorflow")
  import orbax.checkpoint as ocp
  from flax_musicvae.export import __main__ as cli
  config = load_config("groove_2bar_humanize")
  model = build_model(config)
  params = bundle.init_params(model, seed=5)
  workdir = tmp_path / "run"
  workdir.mkdir()
  (workdir / "config.json").write_text(config.to_json_best_effort(indent=2))
  with ocp.CheckpointManager(workdir / "checkpoints") as manager:
    manager.save(3, args=ocp.args.Composite(params=ocp.args.StandardSave(params)))
    manager.wait_until_finished()
  assert cli.main([f"--workdir={workdir}", f"--output={tmp_path / 'out'}",
                   "--batch_sizes=1,4", "--quantizations=fp32"]) == 0
  assert "b4" in capsys.readouterr().out
  assert (tmp_path / "out" / "b1" / "model_fp32.tflite").exists()
  inputs = make_inputs(model, params, seed=2)
  got = run_tflite(tmp_path / "out" / "b4" / "model_fp32.tflite", inputs)
  check_close(model.spec, got, jax_reference(model, params, inputs), "fp32",
              inputs["noise"])


def test_cli_rejects_bad_flags(capsys):
  from flax_musicvae.export import __main__ as cli
  for flag in ("--batch_sizes=0", "--batch_sizes=a", "--quantizations=int4"):
    with pytest.raises(SystemExit):
      cli.parse_args(["--workdir=w", "--output=o", flag])
  assert "quantizations" in capsys.readouterr().err
