"""magenta.js checkpoint folders: manifest/shard layout and exact read-back."""

import json
import os

import numpy as np
import pytest

from flax_musicvae.checkpoints import magentajs
from flax_musicvae.checkpoints import tensor_bundle as tb

SPEC = {"type": "MusicVAE", "dataConverter": {"type": "GrooveConverter",
                                              "args": {"numSteps": 64}}}


def _weights():
  rng = np.random.default_rng(0)
  return {
      "decoder/output_projection/kernel": rng.normal(size=(32, 27)).astype(np.float32),
      "decoder/output_projection/bias": rng.normal(size=(27,)).astype(np.float32),
      "encoder/mu/kernel": rng.normal(size=(300, 100)).astype(np.float32),
      "global_step": np.array(5, np.int64),
  }


def test_folder_round_trip_with_shards_split_inside_weights(tmp_path):
  weights = _weights()
  magentajs.write_folder(tmp_path, weights, SPEC, shard_bytes=10_000)
  manifest = json.loads((tmp_path / "weights_manifest.json").read_text())
  assert len(manifest) == 1
  paths = manifest[0]["paths"]
  total = sum(w.size * 4 for k, w in weights.items() if k != "global_step")
  assert len(paths) == -(-total // 10_000)
  sizes = [os.path.getsize(tmp_path / p) for p in paths]
  assert sum(sizes) == total and max(sizes) == 10_000
  assert [w["name"] for w in manifest[0]["weights"]] == sorted(set(weights) - {"global_step"})
  assert all(w["dtype"] == "float32" for w in manifest[0]["weights"])
  got, spec = magentajs.read_folder(tmp_path)
  assert spec == SPEC
  assert sorted(got) == sorted(set(weights) - {"global_step"})  # scalars are not exported
  for name, value in got.items():
    assert value.dtype == np.float32 and value.shape == weights[name].shape
    np.testing.assert_array_equal(value, weights[name])


def test_default_shards_are_4_mib(tmp_path):
  big = {"w": np.arange(1_500_000, dtype=np.float32).reshape(1000, 1500)}
  manifest = magentajs.write_weights(tmp_path, big)
  sizes = [os.path.getsize(tmp_path / p) for p in manifest[0]["paths"]]
  assert sizes == [4 * 1024 * 1024, 6_000_000 - 4 * 1024 * 1024]
  np.testing.assert_array_equal(magentajs.read_weights(tmp_path)["w"], big["w"])


def test_golden_checkpoint_exports_exactly(golden_dir, tmp_path):
  weights = tb.read_checkpoint(golden_dir / "groovae_4bar")
  magentajs.write_folder(tmp_path, weights, SPEC)
  got, _ = magentajs.read_folder(tmp_path)
  assert sorted(got) == sorted(set(weights) - {"global_step"})
  for name, value in got.items():
    np.testing.assert_array_equal(value, weights[name])


def test_reads_quantized_manifests(tmp_path):
  # Hosted *_q1 / *_q2 checkpoints: value = q * scale + min (uint8 / uint16), or float16.
  (tmp_path / "group1-shard1of1.bin").write_bytes(
      bytes([0, 1, 255]) + np.array([2, 4], "<u2").tobytes()
      + np.array([0.5, -2.0], "<f2").tobytes())
  manifest = [{"paths": ["group1-shard1of1.bin"], "weights": [
      {"name": "a", "shape": [3], "dtype": "float32",
       "quantization": {"min": -1.0, "scale": 0.5, "dtype": "uint8"}},
      {"name": "b", "shape": [1, 2], "dtype": "float32",
       "quantization": {"min": 0.0, "scale": 0.25, "dtype": "uint16"}},
      {"name": "c", "shape": [2], "dtype": "float32", "quantization": {"dtype": "float16"}}]}]
  (tmp_path / "weights_manifest.json").write_text(json.dumps(manifest))
  got = magentajs.read_weights(tmp_path)
  np.testing.assert_array_equal(got["a"], [-1.0, -0.5, 126.5])
  np.testing.assert_array_equal(got["b"], [[0.5, 1.0]])
  np.testing.assert_array_equal(got["c"], [0.5, -2.0])


def test_bad_folders_raise(tmp_path):
  with pytest.raises(ValueError, match="MusicVAESpec"):
    magentajs.write_folder(tmp_path, _weights(), {"dataConverter": {}})
  magentajs.write_weights(tmp_path, _weights())
  shard = tmp_path / "group1-shard1of1.bin"
  shard.write_bytes(shard.read_bytes()[:-4])
  with pytest.raises(ValueError, match="shards end before"):
    magentajs.read_weights(tmp_path)
