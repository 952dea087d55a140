"""MusicRNN export: SavedModel / LiteRT ``step`` with noise inputs continues like JAX."""

from __future__ import annotations

import json

import numpy as np
import pytest

from flax_musicvae.music_rnn import export as rnn_export
from test_music_rnn import golden_generator

pytestmark = pytest.mark.tf


@pytest.mark.parametrize("config", ["attention_rnn", "chord_pitches_improv"])
def test_exported_step_continues_like_jax(config, tmp_path):
  pytest.importorskip("tensorflow")
  pytest.importorskip("ai_edge_litert")
  g, meta, gen = golden_generator(config)
  item = meta["greedy"]["items"][0]
  primer, controls = item["events"][:33], item["control_events"]
  want = gen.generate_events(primer, 80, temperature=1.0, seed=5, controls=controls).events
  dim = rnn_export.state_size(gen.spec)
  jax_events = rnn_export.generate_events(rnn_export.jax_step(gen), gen.encoder, dim, primer,
                                          80, temperature=1.0, seed=5, controls=controls)
  assert jax_events == want
  folder, = rnn_export.export(gen, tmp_path, [1], ["fp32", "int8"])
  assert json.loads((folder / "metadata.json").read_text())["state_size"] == dim
  lite = rnn_export.generate_events(rnn_export.lite_step(folder / "model_fp32.tflite"),
                                    gen.encoder, dim, primer, 80, temperature=1.0, seed=5,
                                    controls=controls)
  assert lite == want
  greedy = gen.generate_events(primer, 60, temperature=1e-6, controls=controls).events
  int8 = rnn_export.generate_events(rnn_export.lite_step(folder / "model_int8.tflite"),
                                    gen.encoder, dim, primer, 60, temperature=1e-6, seed=0,
                                    controls=controls)
  assert len(int8) == 60 and int8[:33] == primer
  agree = np.mean(np.array(int8[33:]) == np.array(greedy[33:]))
  assert agree > 0.5, agree
