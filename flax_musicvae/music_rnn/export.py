r"""MusicRNN -> TF SavedModel + LiteRT ``.tflite`` (one ``step`` signature, noise as input).

  python -m flax_musicvae.music_rnn.export --bundle_file=lookback_rnn.mag --output=/tmp/lx
  python -m flax_musicvae.music_rnn.export --workdir=/tmp/lookback_rnn --output=/tmp/lx

writes ``<output>/b<N>/saved_model/``, ``model_{fp32,fp16,int8}.tflite`` and
``metadata.json`` per batch size. The ``step`` signature takes ``inputs [N, input_size]``
(the encoded last event), the flat RNN ``state [N, state_size]`` (zeros to start),
``noise [N]`` (uniform in [0, 1)) and ``temperature []``, and returns ``logits``, the
``sample`` drawn by inverse CDF (``numpy.random.choice``'s rule: the number of CDF entries
``<= noise``), its ``log_prob`` and the new ``state``. The event encoding stays on the host
(:mod:`flax_musicvae.music_rnn.encodings`, numpy only): :func:`generate_events` runs any
``step`` callable (JAX, SavedModel or LiteRT) the way the JAX generator does.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from flax_musicvae.models import music_rnn
from flax_musicvae.music_rnn import cli
from flax_musicvae.music_rnn import encodings
from flax_musicvae.music_rnn import generator as generator_lib

QUANTIZATIONS = ("fp32", "fp16", "int8")
SIGNATURE = "step"


def state_size(spec: music_rnn.RNNSpec) -> int:
  size = 2 * sum(spec.rnn_layer_sizes)
  if spec.attn_length:
    size += spec.rnn_layer_sizes[0] * (1 + spec.attn_length)
  return size


def flatten_state(state, spec: music_rnn.RNNSpec) -> jax.Array:
  parts = [x for c, h in state["lstm"] for x in (c, h)]
  if spec.attn_length:
    parts += [state["attns"], state["attn_states"].reshape(state["attns"].shape[0], -1)]
  return jnp.concatenate(parts, -1)


def unflatten_state(flat: jax.Array, spec: music_rnn.RNNSpec):
  out, pos = {"lstm": []}, 0
  for units in spec.rnn_layer_sizes:
    out["lstm"].append((flat[:, pos:pos + units], flat[:, pos + units:pos + 2 * units]))
    pos += 2 * units
  out["lstm"] = tuple(out["lstm"])
  if spec.attn_length:
    a = spec.rnn_layer_sizes[0]
    out["attns"] = flat[:, pos:pos + a]
    out["attn_states"] = flat[:, pos + a:pos + a * (1 + spec.attn_length)].reshape(
        -1, spec.attn_length, a)
  return out


def step_with_noise(params, spec: music_rnn.RNNSpec, inputs, state, noise, temperature):
  """One step plus inverse-CDF sampling; pure JAX (what the SavedModel computes)."""
  new, logits = music_rnn.step(params, spec, unflatten_state(state, spec), inputs)
  probs = jax.nn.softmax(logits / temperature, -1)
  cdf = jnp.cumsum(probs, -1)
  cdf = cdf / cdf[:, -1:]
  sample = jnp.minimum(jnp.sum((cdf <= noise[:, None]).astype(jnp.int32), -1),
                       spec.num_classes - 1)
  log_prob = jnp.log(jnp.take_along_axis(probs, sample[:, None], -1)[:, 0])
  return {"logits": logits, "sample": sample, "log_prob": log_prob,
          "state": flatten_state(new, spec)}


def generate_events(step: Callable[..., dict], encoder: encodings.EventEncoder,
                    state_dim: int, primer: Sequence[int], num_steps: int, *,
                    temperature: float = 1.0, seed: int | None = None,
                    controls: Sequence[str] | None = None) -> list[int]:
  """Sampling (beam 1) with a ``step(inputs, state, noise, temperature)`` callable.

  Uses the same ``RandomState(seed)`` draws as :class:`generator.MusicRNNGenerator`, so
  (up to float rounding at CDF boundaries) the same continuation.
  """
  events = [int(e) for e in primer]
  if encoder.conditional:
    controls = list(controls)
    while len(controls) < num_steps + 1:
      controls.append(controls[-1])
  rs = np.random.RandomState(seed)
  state = np.zeros((1, state_dim), np.float32)
  temp = np.float32(temperature)
  inputs = encoder.inputs(events, controls).astype(np.float32)
  for t in range(len(events)):
    noise = np.zeros(1, np.float32) if t < len(events) - 1 else \
        np.array([rs.random_sample()], np.float32)
    out = step(inputs[t:t + 1], state, noise, temp)
    state = np.asarray(out["state"], np.float32)
  while True:
    events.append(encoder.class_to_event(int(np.asarray(out["sample"])[0]), events))
    if len(events) >= num_steps:
      return events
    x = encoder.inputs(events, controls)[-1:].astype(np.float32)
    out = step(x, state, np.array([rs.random_sample()], np.float32), temp)
    state = np.asarray(out["state"], np.float32)


def jax_step(gen: generator_lib.MusicRNNGenerator) -> Callable[..., dict]:
  fn = jax.jit(lambda p, x, s, n, t: step_with_noise(p, gen.spec, x, s, n, t))
  return lambda x, s, n, t: fn(gen.params, x, s, n, t)


def metadata(gen: generator_lib.MusicRNNGenerator, batch_size: int) -> dict[str, Any]:
  return {"format": "flax_musicvae.music_rnn", "signature": SIGNATURE,
          "batch_size": batch_size, "encoding": gen.encoding, "min_note": gen.min_note,
          "max_note": gen.max_note, "transpose_to_key": gen.transpose_to_key,
          "steps_per_quarter": gen.steps_per_quarter, "input_size": gen.spec.input_size,
          "num_classes": gen.spec.num_classes, "state_size": state_size(gen.spec),
          "rnn_layer_sizes": list(gen.spec.rnn_layer_sizes),
          "attn_length": gen.spec.attn_length, "details": gen.details or {}}


def export(gen: generator_lib.MusicRNNGenerator, out_dir: str | os.PathLike,
           batch_sizes: Sequence[int] = (1,), quantizations: Sequence[str] = QUANTIZATIONS
           ) -> list[pathlib.Path]:
  """Writes ``b<N>/{saved_model/, model_<q>.tflite, metadata.json}``; returns the folders."""
  import tensorflow as tf  # optional: [export]  pylint: disable=import-outside-toplevel
  from jax.experimental import jax2tf  # optional: [export]  pylint: disable=import-outside-toplevel
  spec = gen.spec
  folders = []
  for n in batch_sizes:
    folder = pathlib.Path(out_dir) / f"b{n}"
    folder.mkdir(parents=True, exist_ok=True)
    module = tf.Module()
    module.params = jax.tree.map(lambda x: tf.Variable(np.asarray(x), trainable=False),
                                 gen.params)
    converted = jax2tf.convert(lambda p, x, s, z, t: step_with_noise(p, spec, x, s, z, t),
                               with_gradient=False)
    signature = [tf.TensorSpec((n, spec.input_size), tf.float32, name="inputs"),
                 tf.TensorSpec((n, state_size(spec)), tf.float32, name="state"),
                 tf.TensorSpec((n,), tf.float32, name="noise"),
                 tf.TensorSpec((), tf.float32, name="temperature")]
    module.step = tf.function(lambda x, s, z, t: converted(module.params, x, s, z, t),
                              input_signature=signature, autograph=False)
    saved = folder / "saved_model"
    tf.saved_model.save(module, str(saved),
                        signatures={SIGNATURE: module.step.get_concrete_function()})
    for q in quantizations:
      converter = tf.lite.TFLiteConverter.from_saved_model(str(saved),
                                                           signature_keys=[SIGNATURE])
      converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
      if q != "fp32":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
      if q == "fp16":
        converter.target_spec.supported_types = [tf.float16]
      (folder / f"model_{q}.tflite").write_bytes(converter.convert())
    (folder / "metadata.json").write_text(json.dumps(metadata(gen, n), indent=2) + "\n")
    folders.append(folder)
  return folders


def lite_step(path: str | os.PathLike) -> Callable[..., dict]:
  """A ``step`` callable running a ``.tflite`` with LiteRT (no TensorFlow, no JAX)."""
  # optional: [lite]
  from ai_edge_litert import interpreter as litert  # pylint: disable=import-outside-toplevel
  runner = litert.Interpreter(model_path=os.fspath(path)).get_signature_runner(SIGNATURE)
  return lambda x, s, z, t: runner(inputs=x, state=s, noise=z, temperature=np.asarray(t))


def main(argv: Sequence[str] | None = None) -> int:
  p = argparse.ArgumentParser(prog="python -m flax_musicvae.music_rnn.export",
                              description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  src = p.add_mutually_exclusive_group(required=True)
  src.add_argument("--bundle_file", help="a Magenta .mag generator bundle")
  src.add_argument("--workdir", help="a MusicRNN training run directory")
  p.add_argument("--output", required=True)
  p.add_argument("--batch_sizes", default="1")
  p.add_argument("--quantizations", default=",".join(QUANTIZATIONS))
  args = p.parse_args(argv)
  try:
    gen = cli.load_generator(bundle_file=args.bundle_file, workdir=args.workdir)
    sizes = [int(v) for v in args.batch_sizes.split(",")]
    quants = [q for q in args.quantizations.split(",") if q]
    if any(q not in QUANTIZATIONS for q in quants) or min(sizes) < 1:
      raise ValueError(f"bad --quantizations / --batch_sizes: {args.quantizations!r}, "
                       f"{args.batch_sizes!r}")
  except cli.ERRORS as e:
    p.exit(2, f"error: {e}\n")
  for folder in export(gen, args.output, sizes, quants):
    print(f"wrote {folder}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
