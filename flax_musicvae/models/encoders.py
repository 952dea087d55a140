"""Bidirectional and hierarchical LSTM encoders (Magenta's lstm_models encoders)."""

from __future__ import annotations

import math
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from flax_musicvae.models import lstm

Array = jax.Array


class BidirectionalEncoder(nn.Module):
  """``stack_bidirectional_dynamic_rnn``: per layer ``cell_{l}`` a forward and a backward LSTM.

  Layer l+1 reads concat(fw outputs, bw outputs) of layer l; the embedding is the concat of
  the last layer's final forward and backward h. The backward LSTM runs on the reversed
  valid part of each sequence; both directions run in one recurrence (``lstm.run_layers``).
  """
  sizes: Sequence[int]
  input_size: int
  keep_prob: float = 1.0
  residual: bool = False
  remat: bool = False

  @property
  def output_size(self) -> int:
    return 2 * self.sizes[-1]

  @nn.compact
  def __call__(self, xs: Array, lengths: Array | None, dropout_key: Array | None) -> Array:
    keys = (None,) * (2 * len(self.sizes)) if dropout_key is None else tuple(
        jax.random.split(dropout_key, 2 * len(self.sizes)))
    input_size = self.input_size
    for l, size in enumerate(self.sizes):
      fw, bw = (lstm.LSTMStack([size], self.residual, name=f"cell_{l}_{d}")(input_size)[0]
                for d in ("fw", "bw"))
      (fw_out, (_, fw_h)), (bw_out, (_, bw_h)) = lstm.run_layers(
          [fw, bw], [xs, lstm.reverse_valid(xs, lengths)], lengths, keep_prob=self.keep_prob,
          keys=keys[2 * l:2 * l + 2], remat=self.remat, residual=self.residual)
      xs = jnp.concatenate([fw_out, lstm.reverse_valid(bw_out, lengths)], -1)
      input_size = 2 * size
    return jnp.concatenate([fw_h, bw_h], -1)


def segment_lengths(lengths: Array, num_segments: int, segment_len: int) -> Array:
  """Per-segment lengths ``[B, S]`` of sequences padded per segment.

  ``lengths`` is either already ``[B, S]`` or total lengths ``[B]``, which fill segments
  in order (Magenta accepts only 0 or the full length there; this is the general case).
  """
  if lengths.ndim == 2:
    return lengths
  starts = jnp.arange(num_segments)[None, :] * segment_len
  return jnp.clip(lengths[:, None] - starts, 0, segment_len).astype(jnp.int32)


class HierarchicalEncoder(nn.Module):
  """``HierarchicalLstmEncoder``: BiLSTM over segments, then over their embeddings, ...

  ``level_lengths[k]`` is the number of items encoded together at level k; their product
  is the padded sequence length. Level k has its own encoder ``level_{k}``.
  """
  level_lengths: Sequence[int]
  sizes: Sequence[int]
  input_size: int
  keep_prob: float = 1.0
  residual: bool = False
  remat: bool = False

  def level_encoder(self, k: int) -> BidirectionalEncoder:
    in_size = self.input_size if k == 0 else 2 * self.sizes[-1]
    return BidirectionalEncoder(self.sizes, in_size, self.keep_prob, self.residual,
                                self.remat, name=f"level_{k}")

  @nn.compact
  def __call__(self, xs: Array, lengths: Array | None, dropout_key: Array | None) -> Array:
    batch, total = xs.shape[:2]
    if total != math.prod(self.level_lengths):
      raise ValueError(f"hierarchical encoder level lengths {tuple(self.level_lengths)} "
                       f"do not multiply to the padded length {total}")
    keys = [None] * len(self.level_lengths) if dropout_key is None else list(
        jax.random.split(dropout_key, len(self.level_lengths)))
    seg = self.level_lengths[0]
    num = total // seg
    seg_lengths = None if lengths is None else segment_lengths(lengths, num, seg)
    for k, key in enumerate(keys):
      seg = self.level_lengths[k]
      num = xs.shape[1] // seg
      flat = xs.reshape(batch * num, seg, xs.shape[-1])
      flat_len = None if k or seg_lengths is None else seg_lengths.reshape(-1)
      xs = self.level_encoder(k)(flat, flat_len, key).reshape(batch, num, -1)
    return xs[:, 0]
