"""Evaluation metrics as Magenta's streaming tf.metrics compute them: means over every
valid step of the whole evaluation (not means of per-batch means), per-example losses
per example, and MusicRNN's perplexity as the mean of each step's exp(cross entropy)."""

import math

import jax.numpy as jnp
import pytest

from flax_musicvae import config_lib
from flax_musicvae import steps
from flax_musicvae.models import losses
from flax_musicvae.models import music_rnn


def test_music_rnn_metrics_by_hand():
  outputs = {"mask": jnp.array([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]]),
             "step_loss": jnp.array([[math.log(2.0), math.log(4.0), 9.0],
                                     [math.log(6.0), 9.0, 9.0]]),
             "step_correct": jnp.array([[1.0, 0.0, 1.0], [1.0, 1.0, 1.0]])}
  loss, metrics = music_rnn.compute_loss(outputs)
  assert float(loss) == pytest.approx((math.log(2) + math.log(4) + math.log(6)) / 3)
  assert float(metrics["perplexity"]) == pytest.approx((2 + 4 + 6) / 3)  # not exp(loss)
  assert float(metrics["accuracy"]) == pytest.approx(2 / 3)
  assert float(metrics["valid_steps"]) == 3


@pytest.mark.parametrize("name", ["groove_4bar", "basic_rnn"])
def test_evaluation_weights_step_means_by_valid_steps(name):
  """Batch 1: 10 valid steps, all right; batch 2: 30 valid steps, all wrong. Magenta's
  accuracy is 10 / 40; the mean of the batch means would be 0.5."""
  config = config_lib.tiny(name)
  batches = [{"steps": 10.0, "correct": 1.0, "r_loss": 2.0},
             {"steps": 30.0, "correct": 0.0, "r_loss": 4.0}]

  def eval_step(params, batch, rng, step, sp):
    del params, rng, step, sp
    return {"accuracy": jnp.float32(batch["correct"]), "r_loss": jnp.float32(batch["r_loss"]),
            "valid_steps": jnp.float32(batch["steps"])}

  metrics = steps.evaluate_params(config, eval_step, None, 0, batches)
  assert metrics["accuracy"] == pytest.approx(0.25)
  assert metrics["valid_steps"] == pytest.approx(20.0)
  step_mean = losses.is_step_mean("r_loss", config.model)
  assert metrics["r_loss"] == pytest.approx((2 * 10 + 4 * 30) / 40 if step_mean else 3.0)
  assert step_mean == (name == "basic_rnn")   # MusicVAE's r_loss is per example


def test_groove_step_losses_and_part_accuracies_are_step_means():
  model = config_lib.tiny("groove_4bar").model
  assert all(losses.is_step_mean(k, model) for k in
             ("accuracy", "accuracy/output_1", "hits_loss", "velocities_loss", "offsets_loss"))
  assert not any(losses.is_step_mean(k, model) for k in
                 ("loss", "r_loss", "kl_loss", "kl_bits", "beta", "valid_steps"))
