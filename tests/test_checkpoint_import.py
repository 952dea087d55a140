"""Importing Magenta TF1 checkpoints into Flax params, and exporting them back."""

import numpy as np
import pytest

from flax_musicvae.checkpoints import magenta_import as mi
from flax_musicvae.checkpoints import tensor_bundle as tb


def _golden_weights(golden_dir, config):
  return tb.read_checkpoint(golden_dir / config)


def test_match_variables_applies_magenta_substitutions(golden_dir):
  ckpt = _golden_weights(golden_dir, "groovae_4bar")
  expected = {k: v.shape for k, v in ckpt.items() if k != "global_step"}
  # An "old" checkpoint whose LSTM variables were stored under different names.
  renamed = {k.replace("lstm_cell/kernel", "basic_lstm_cell/weights"): v for k, v in ckpt.items()}
  subs = [(r"lstm_cell/kernel$", "basic_lstm_cell/weights")]
  got = mi.match_variables(renamed, expected, subs)
  assert sorted(got) == sorted(expected)
  for name in expected:
    np.testing.assert_array_equal(got[name], ckpt[name])
  assert mi.substitute("decoder/multi_rnn_cell/cell_0/lstm_cell/kernel", subs) == (
      "decoder/multi_rnn_cell/cell_0/basic_lstm_cell/weights")


def test_match_variables_ignores_training_state(golden_dir):
  ckpt = _golden_weights(golden_dir, "cat-drums_2bar_small")
  expected = {k: v.shape for k, v in ckpt.items() if k != "global_step"}
  with_adam = dict(ckpt, beta1_power=np.float32(0.9), beta2_power=np.float32(0.999))
  for name in expected:
    with_adam[name + "/Adam"] = with_adam[name + "/Adam_1"] = np.zeros_like(ckpt[name])
  assert sorted(mi.match_variables(with_adam, expected)) == sorted(expected)


def test_mismatch_lists_missing_unexpected_and_misshaped(golden_dir):
  ckpt = _golden_weights(golden_dir, "groovae_4bar")
  expected = {k: v.shape for k, v in _golden_weights(golden_dir, "cat-drums_2bar_small").items()
              if k != "global_step"}
  ckpt["decoder/extra/bias"] = np.zeros(3, np.float32)
  del ckpt["encoder/mu/bias"]
  with pytest.raises(mi.CheckpointMismatchError) as err:
    mi.match_variables(ckpt, expected, what="config cat-drums_2bar_small")
  message = str(err.value)
  assert "do not match config cat-drums_2bar_small" in message
  assert "missing (1):\n    encoder/mu/bias" in message
  assert "unexpected (1):\n    decoder/extra/bias" in message
  assert "decoder/output_projection/bias: checkpoint [27], model [512]" in message
  assert "decoder/multi_rnn_cell/cell_0/lstm_cell/kernel: checkpoint [75, 128], model [560, 128]" \
      in message
