"""magenta.js checkpoint folders: manifest/shard layout and exact read-back."""

import json
import os
import shutil
import subprocess

import ml_collections
import numpy as np
import pytest

from flax_musicvae.checkpoints import magentajs
from flax_musicvae.checkpoints import tensor_bundle as tb

# Loads a checkpoint folder in @magenta/music (served over localhost, as the browser
# would fetch it), encodes golden inputs to mu and greedily decodes golden z.
_NODE_SCRIPT = r"""
const http = require('http'), fs = require('fs'), path = require('path');
const [folder, inputsPath, outPath] = process.argv.slice(2);
const mvae = require('@magenta/music/node/music_vae');
const tf = require('@tensorflow/tfjs');
const server = http.createServer((req, res) => {
  fs.readFile(path.join(folder, decodeURIComponent(req.url)), (err, data) => {
    if (err) { res.writeHead(404); res.end(); } else { res.writeHead(200); res.end(data); }
  });
});
server.listen(0, '127.0.0.1', async () => {
  try {
    const model = new mvae.MusicVAE(`http://127.0.0.1:${server.address().port}`);
    await model.initialize();
    const inp = JSON.parse(fs.readFileSync(inputsPath));
    const mu = await model.encodeTensors(tf.tensor3d(inp.enc_inputs), {});
    const out = await model.decodeTensors(tf.tensor2d(inp.z_given));
    fs.writeFileSync(outPath, JSON.stringify({mu: await mu.array(), samples: await out.array()}));
  } catch (e) { console.error(e); process.exitCode = 1; }
  server.close();
});
"""

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


@pytest.mark.parametrize("name", ["groovae_4bar", "cat-drums_2bar_small"])
def test_magentajs_in_node_reproduces_golden(golden_dir, tmp_path, name):
  """Optional: needs ``node`` and ``MAGENTAJS_NODE_MODULES`` = a node_modules folder
  holding @magenta/music (``npm install @magenta/music``). Imports the golden Magenta
  checkpoint, exports it with our config's spec, runs it in @magenta/music."""
  modules = os.environ.get("MAGENTAJS_NODE_MODULES", "")
  if not shutil.which("node") or not os.path.isdir(os.path.join(modules, "@magenta", "music")):
    pytest.skip("set MAGENTAJS_NODE_MODULES to a node_modules with @magenta/music")
  from flax_musicvae.checkpoints import magenta_import
  from test_checkpoint_import import _golden_config
  config = _golden_config(golden_dir, name)
  params, _ = magenta_import.import_params(golden_dir / name, config)
  magenta_import.export_magentajs(params, config, tmp_path / "ckpt")
  golden = np.load(golden_dir / name / "golden.npz")
  (tmp_path / "in.json").write_text(json.dumps(
      {"enc_inputs": golden["enc_inputs"].tolist(), "z_given": golden["z_given"].tolist()}))
  (tmp_path / "run.js").write_text(_NODE_SCRIPT)
  subprocess.run(["node", tmp_path / "run.js", tmp_path / "ckpt", tmp_path / "in.json",
                  tmp_path / "out.json"], check=True, timeout=300, capture_output=True,
                 env=dict(os.environ, NODE_PATH=modules))
  out = json.loads((tmp_path / "out.json").read_text())
  np.testing.assert_allclose(np.array(out["mu"]), golden["mu"], atol=1e-5)
  # One-hots / hits are exact 0 or 1; groove velocities and offsets are sigmoid/tanh values.
  np.testing.assert_allclose(np.array(out["samples"]), golden["greedy_samples"], atol=1e-5)


def test_unsupported_architecture_is_refused(golden_dir, tmp_path):
  weights = tb.read_checkpoint(golden_dir / "hierdec-mel_16bar")  # 2-layer flat encoder
  with pytest.raises(ValueError, match="single-layer bidirectional encoders only"):
    magentajs.write_folder(tmp_path, weights, SPEC)


def test_spec_for_converters():
  from flax_musicvae.data import drums, groove, melody, trio
  hier = ml_collections.ConfigDict({"max_seq_len": 256, "decoder": "hierarchical",
                                    "level_lengths": (16, 16)})
  flat = ml_collections.ConfigDict({"max_seq_len": 64, "decoder": "groove"})
  reduced = [list(c) for c in drums.REDUCED_DRUM_PITCH_CLASSES]
  assert magentajs.spec_for(melody.OneHotMelodyConverter(), hier) == {
      "type": "MusicVAE", "useBooleanDecoder": False, "conditionOnKey": False,
      "dataConverter": {"type": "MelodyConverter", "args": {
          "numSteps": 256, "numSegments": 16, "minPitch": 21, "maxPitch": 108}}}
  chords = magentajs.spec_for(melody.OneHotMelodyConverter(chord_encoding="triad"), hier)
  assert chords["chordEncoder"] == "TriadChordEncoder"
  assert magentajs.spec_for(trio.TrioConverter(), hier)["dataConverter"] == {
      "type": "TrioConverter", "args": {
          "numSteps": 256, "numSegments": 16, "melArgs": {"minPitch": 21, "maxPitch": 108},
          "bassArgs": {"minPitch": 21, "maxPitch": 108}, "drumsArgs": {"pitchClasses": reduced}}}
  assert magentajs.spec_for(drums.DrumsConverter(roll_input=True), flat)["dataConverter"] == {
      "type": "DrumsConverter", "args": {"numSteps": 64, "pitchClasses": reduced}}
  full = drums.DrumsConverter(roll_input=True, roll_output=True,
                              pitch_classes=drums.FULL_DRUM_PITCH_CLASSES)
  converter = magentajs.spec_for(full, flat)["dataConverter"]
  assert converter["type"] == "DrumRollConverter"
  assert converter["args"]["pitchClasses"] == [[p] for (p,) in drums.FULL_DRUM_PITCH_CLASSES]
  groovae = groove.GrooveConverter(
      split_bars=4, pitch_classes=groove.ROLAND_DRUM_PITCH_CLASSES,
      inference_pitch_classes=groove.REDUCED_DRUM_PITCH_CLASSES)
  assert magentajs.spec_for(groovae, flat)["dataConverter"] == {
      "type": "GrooveConverter", "args": {"numSteps": 64, "stepsPerQuarter": 4,
                                          "humanize": False, "tapify": False,
                                          "pitchClasses": reduced}}
  tap = groove.GrooveConverter(split_bars=2, tapify=True, fixed_velocities=True)
  assert magentajs.spec_for(tap, flat)["dataConverter"]["args"]["tapify"] is True
  for bad in (groove.GrooveConverter(tapify=True), groove.GrooveConverter(hits_as_controls=True)):
    with pytest.raises(ValueError, match="magenta.js"):
      magentajs.spec_for(bad, flat)
  with pytest.raises(ValueError, match="no magenta.js data converter"):
    magentajs.spec_for(object(), flat)
  flat_trio = ml_collections.ConfigDict({"max_seq_len": 256, "decoder": "multi_out"})
  with pytest.raises(ValueError, match="multi-output"):
    magentajs.spec_for(trio.TrioConverter(), flat_trio)
