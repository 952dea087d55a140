"""The MusicVAE model: encoder -> (mu, sigma) -> z -> decoder, built from a config.

``build_model(config)`` returns a linen module whose variables mirror Magenta's TF names
(see ``tf_names.py``). ``__call__`` runs the training/eval graph of
``base_model._compute_model_loss`` up to the per-step losses; ``losses.compute_loss``
reduces them as Magenta does.

Mixed precision: the network computes in the dtype of the batch's float arrays (of ``z``
for ``sample``) when that is bfloat16 or float16, else in float32 (:func:`compute_dtype`);
weights are cast to it at each matmul. sigma, the KL, z's noise and the losses stay in
float32, as do the LSTM cell states (``lstm.state_dtype``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from flax_musicvae.models import decoders
from flax_musicvae.models import encoders
from flax_musicvae.models import losses
from flax_musicvae.models import music_rnn
from flax_musicvae.models import sampling

Array = jax.Array
DECODERS = ("categorical", "multi_out", "split", "hierarchical", "groove", "nade")
HALF_DTYPES = (jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float16))


def compute_dtype(x: Array) -> jnp.dtype:
  """The dtype the network runs in for input ``x``: its own if half precision, else float32."""
  dtype = jnp.dtype(x.dtype)
  return dtype if dtype in HALF_DTYPES else jnp.dtype(jnp.float32)


@dataclasses.dataclass(frozen=True)
class ModelSpec:
  """The hashable subset of ``config.model`` that defines the network."""
  input_depth: int
  output_depth: int
  control_depth: int
  z_size: int
  enc_rnn_size: tuple[int, ...]
  dec_rnn_size: tuple[int, ...]
  max_seq_len: int
  encoder: str = "bidirectional"
  decoder: str = "categorical"
  core_decoder: str = ""
  level_lengths: tuple[int, ...] = ()
  disable_autoregression: bool = True
  output_depths: tuple[int, ...] = ()
  nade_num_hidden: int = 128
  dropout_keep_prob: float = 1.0
  residual_encoder: bool = False
  residual_decoder: bool = False
  remat: bool = False

  @classmethod
  def from_config(cls, model_cfg: Any) -> "ModelSpec":
    kw = {}
    for f in dataclasses.fields(cls):
      if f.name in model_cfg:
        v = model_cfg[f.name]
        kw[f.name] = tuple(v) if isinstance(v, (list, tuple)) else v
    return cls(**kw)

  @property
  def flat_decoder(self) -> str:
    return self.core_decoder if self.decoder == "hierarchical" else self.decoder

  @property
  def head(self) -> sampling.Head:
    kind = {"split": "multi_out"}.get(self.flat_decoder, self.flat_decoder)
    return sampling.Head(kind, self.output_depth, tuple(self.output_depths),
                         self.nade_num_hidden if kind == "nade" else 0)

  @property
  def segment_length(self) -> int:
    """Steps per independently started decoder segment (hierarchical: the core length)."""
    return self.level_lengths[-1] if self.decoder == "hierarchical" else self.max_seq_len


def _settings(sp: ModelSpec) -> decoders.DecoderSettings:
  return decoders.DecoderSettings(tuple(sp.dec_rnn_size), sp.dropout_keep_prob,
                                  sp.residual_decoder, sp.remat)


def _flat_module(kind: str, settings, head, z_size: int, aux_size: int, **kw) -> nn.Module:
  if kind not in DECODERS or kind == "hierarchical":
    raise ValueError(f"unknown decoder {kind!r}; expected one of {DECODERS}")
  cls = decoders.SplitDecoderParams if kind == "split" else decoders.FlatDecoderParams
  return cls(settings, head, z_size, aux_size, **kw)


class HierarchicalDecoderParams(nn.Module):
  """Conductor ``hierarchical_level_0`` plus the core decoder ``core``."""
  spec: ModelSpec

  @nn.compact
  def __call__(self) -> decoders.HierarchicalDecoder:
    sp, settings = self.spec, _settings(self.spec)
    if len(sp.level_lengths) != 2:
      raise ValueError(f"hierarchical decoder supports 2 levels, got {sp.level_lengths}")
    if sp.max_seq_len != sp.level_lengths[0] * sp.level_lengths[1]:
      raise ValueError(f"level lengths {sp.level_lengths} do not multiply to max_seq_len "
                       f"{sp.max_seq_len}")
    core = _flat_module(sp.core_decoder, settings, sp.head, sp.dec_rnn_size[-1],
                        sp.control_depth, name="core")()
    conductor_in = 1 if sp.disable_autoregression else sp.z_size + core_state_size(core)
    params = decoders.ConductorParams(settings, conductor_in, sp.z_size,
                                      name="hierarchical_level_0")()
    return decoders.HierarchicalDecoder(tuple(sp.level_lengths),
                                        not sp.disable_autoregression, settings, params, core)


def decoder_module(sp: ModelSpec) -> nn.Module:
  """The module declaring ``decoder/...`` variables; calling it returns the decoder."""
  if sp.decoder == "hierarchical":
    return HierarchicalDecoderParams(sp)
  return _flat_module(sp.decoder, _settings(sp), sp.head, sp.z_size, sp.control_depth)


def core_state_size(core) -> int:
  cores = core.cores if isinstance(core, decoders.SplitDecoder) else [core]
  return sum(2 * s for c in cores for s in c.settings.sizes)


class MusicVAE(nn.Module):
  """MusicVAE / GrooVAE. rng streams: 'params', 'dropout' (train), 'sample' (z, sampling)."""
  spec: ModelSpec

  def setup(self):
    sp = self.spec
    enc_in = sp.input_depth + sp.control_depth
    if sp.z_size:
      if sp.encoder == "hierarchical":
        self.encoder = encoders.HierarchicalEncoder(
            tuple(reversed(sp.level_lengths)), tuple(sp.enc_rnn_size), enc_in,
            sp.dropout_keep_prob, sp.residual_encoder, sp.remat)
        enc_out = 2 * sp.enc_rnn_size[-1]
      elif sp.encoder == "bidirectional":
        self.encoder = encoders.BidirectionalEncoder(
            tuple(sp.enc_rnn_size), enc_in, sp.dropout_keep_prob, sp.residual_encoder,
            sp.remat)
        enc_out = 2 * sp.enc_rnn_size[-1]
      else:
        raise ValueError(f"unknown encoder {sp.encoder!r}")
      self.mu = decoders.DenseParams(enc_out, sp.z_size, decoders.STATE_INIT)
      self.sigma = decoders.DenseParams(enc_out, sp.z_size, decoders.STATE_INIT)
    self.decoder = decoder_module(sp)

  def _dropout_key(self, train: bool) -> Array | None:
    if train and self.spec.dropout_keep_prob < 1.0:
      return self.make_rng("dropout")
    return None

  def _controls(self, controls: Array | None, batch: int, steps: int, dtype) -> Array:
    if controls is None:
      controls = jnp.zeros((batch, steps, 0), dtype)
    if controls.shape[-1] != self.spec.control_depth:
      raise ValueError(f"controls depth {controls.shape[-1]} != control_depth "
                       f"{self.spec.control_depth}")
    return controls[:, :steps].astype(dtype)

  def encode(self, batch: dict[str, Array], *, train: bool = False) -> tuple[Array, Array]:
    """Posterior parameters (mu, sigma) ``[B, z]`` (float32) of ``batch['inputs']``
    (+ controls)."""
    dtype = compute_dtype(batch["inputs"])
    x = batch["inputs"][:, :self.spec.max_seq_len].astype(dtype)
    lengths = jnp.minimum(batch["lengths"], x.shape[1])
    controls = self._controls(batch.get("controls"), x.shape[0], x.shape[1], dtype)
    h = self.encoder(jnp.concatenate([x, controls], -1), lengths, self._dropout_key(train))
    mu = decoders.dense(self.mu(), h).astype(jnp.float32)
    sigma = jax.nn.softplus(decoders.dense(self.sigma(), h).astype(jnp.float32))
    return mu, sigma

  def decode(self, z: Array, batch: dict[str, Array], *, train: bool = False) -> Array:
    """Teacher-forced logits ``[B, T, proj]`` for targets ``batch['outputs']``."""
    x_input, _, lengths, controls = self._targets(batch)
    logits, _ = self.decoder().teacher(z.astype(x_input.dtype), x_input, controls, lengths,
                                       self._dropout_key(train))
    return logits

  def _targets(self, batch):
    """Decoder inputs (shifted targets) in the compute dtype of ``batch['inputs']``; the
    targets themselves keep their own precision for the float32 loss."""
    dtype = compute_dtype(batch.get("inputs", batch["outputs"]))
    x_target = batch["outputs"][:, :self.spec.max_seq_len]
    x_input = jnp.pad(x_target[:, :-1].astype(dtype), ((0, 0), (1, 0), (0, 0)))
    lengths = jnp.minimum(batch["lengths"], x_target.shape[1])
    controls = self._controls(batch.get("controls"), *x_target.shape[:2], dtype)
    return x_input, x_target, lengths, controls

  def sample(self, z: Array, *, temperature: float | Array | None = 1.0,
             controls: Array | None = None, length: int | None = None,
             end_token: int | None = None, noise: Array | None = None) -> dict[str, Array]:
    """Free-running decode from ``z``; ``temperature=None`` is greedy (argmax / threshold).

    The sampling noise is drawn from the ``'sample'`` rng, or is ``noise [B, L,
    sampling.noise_depth(head)]`` when given (export: ``sampling.NoiseSampler``).
    Returns ``outputs [B, L, D]``, ``lengths [B]`` and pre-activation ``logits``.
    """
    batch, length = z.shape[0], length or self.spec.max_seq_len
    dtype = compute_dtype(z)
    z = z.astype(dtype)
    controls = self._controls(controls, batch, length, dtype)
    if controls.shape[1] != length:
      raise ValueError(f"controls cover {controls.shape[1]} steps, need {length}")
    depth = self.spec.output_depth
    zeros = jnp.zeros((batch, length, depth), dtype)
    sampler = (sampling.KeySampler(self.make_rng("sample"), temperature) if noise is None
               else sampling.NoiseSampler(noise, temperature))
    res = self.decoder().stepwise(z, zeros, controls, jnp.ones((batch, length), bool),
                                  zeros[:, 0], sampler, None, end_token)
    return {"outputs": res["samples"], "lengths": res["lengths"], "logits": res["logits"]}

  def __call__(self, batch: dict[str, Array], *, train: bool,
               sampling_probability: float | Array = 0.0) -> dict[str, Array]:
    """Encodes, samples z ~ q(z|x), decodes (teacher forcing / scheduled sampling).

    ``sampling_probability`` (``schedules.sampling_probability``) is the per-step chance
    of feeding the model's own sample instead of the ground truth; a Python 0.0 selects
    the plain teacher-forced graph. Returns mu, sigma, z, kl (nats), logits, mask and the
    per-step losses/metrics that ``losses.compute_loss`` reduces.
    """
    sp = self.spec
    x_input, x_target, lengths, controls = self._targets(batch)
    bsz, steps = x_target.shape[:2]
    if sp.z_size:
      mu, sigma = self.encode(batch, train=train)
      z = mu + sigma * jax.random.normal(self.make_rng("sample"), mu.shape)
      kl = jnp.sum(0.5 * (mu ** 2 + sigma ** 2 - 1.0) - jnp.log(sigma), -1)
    else:
      mu = sigma = z = jnp.zeros((bsz, 0), jnp.float32)
      kl = jnp.zeros((bsz,), jnp.float32)
    z = z.astype(x_input.dtype)
    dec = self.decoder()
    dkey = self._dropout_key(train)
    if isinstance(sampling_probability, (int, float)) and sampling_probability == 0.0:
      logits, _ = dec.teacher(z, x_input, controls, lengths, dkey)
    else:
      select = jax.random.bernoulli(self.make_rng("sample"), sampling_probability,
                                    (bsz, steps))
      first = (jnp.arange(steps) % sp.segment_length) == 0
      select = select & ~first[None, :]
      temperature = None if sp.head.kind == "nade" else 1.0
      sampler = sampling.KeySampler(self.make_rng("sample"), temperature)
      logits = dec.stepwise(z, x_input, controls, select, x_input[:, 0], sampler,
                            dkey)["logits"]
    mask = step_mask(lengths, steps)
    step_loss, step_metrics = losses.step_losses(dec.head, nade_params(dec), logits, x_target)
    return {"mu": mu, "sigma": sigma, "z": z, "kl": kl, "logits": logits, "mask": mask,
            "step_loss": step_loss, **step_metrics}


def step_mask(lengths: Array, steps: int) -> Array:
  """``[B, T]`` float mask of valid steps from total lengths ``[B]`` or from per-segment
  lengths ``[B, S]`` (segments of ``T // S`` steps, each valid up to its own length:
  hierarchical multi-instrument examples)."""
  if lengths.ndim == 2:
    seg = steps // lengths.shape[1]
    valid = jnp.arange(seg)[None, None, :] < lengths[:, :, None]
    return valid.reshape(lengths.shape[0], -1).astype(jnp.float32)
  return (jnp.arange(steps)[None, :] < lengths[:, None]).astype(jnp.float32)


def nade_params(dec) -> dict | None:
  core = getattr(dec, "core", dec)
  return getattr(core, "params", {}).get("nade")


def build_model(config) -> MusicVAE:
  """The MusicVAE module for a full config (``config.model`` section used).

  ``model.architecture == "music_rnn"``: Magenta's MusicRNN instead (Melody/Drums/Improv RNN).
  """
  model_cfg = config.model if "model" in config else config
  if model_cfg.get("architecture", "music_vae") == "music_rnn":
    return music_rnn.build(model_cfg)
  return MusicVAE(ModelSpec.from_config(model_cfg))


def dummy_batch(spec: ModelSpec, batch_size: int) -> dict[str, Array]:
  """Zero batch of the model's shapes (for ``init`` and shape inference)."""
  t = spec.max_seq_len
  return {"inputs": jnp.zeros((batch_size, t, spec.input_depth), jnp.float32),
          "outputs": jnp.zeros((batch_size, t, spec.output_depth), jnp.float32),
          "controls": jnp.zeros((batch_size, t, spec.control_depth), jnp.float32),
          "lengths": jnp.full((batch_size,), t, jnp.int32)}
