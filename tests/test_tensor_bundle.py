"""TensorBundle reader/writer: golden Magenta checkpoints, round trips, TF cross-checks."""

import os
import tarfile

import ml_dtypes
import numpy as np
import pytest

from flax_musicvae.io import crc32c
from flax_musicvae.checkpoints import tensor_bundle as tb

GOLDEN_CONFIGS = ["cat-drums_2bar_small", "groovae_4bar", "hierdec-mel_16bar"]


def _assert_same_tensors(got, want):
  assert sorted(got) == sorted(want)
  for name in want:
    assert got[name].dtype == want[name].dtype, name
    assert got[name].shape == want[name].shape, name
    np.testing.assert_array_equal(got[name], want[name], err_msg=name)


def _sample_tensors():
  rng = np.random.default_rng(0)
  tensors = {
      "f32": rng.normal(size=(3, 5)).astype(np.float32),
      "f64": rng.normal(size=(7,)),
      "i32": rng.integers(-2**31, 2**31, size=(2, 2, 2), dtype=np.int32),
      "i64": np.array(-(2**62), dtype=np.int64),
      "bf16": rng.normal(size=(4, 3)).astype(ml_dtypes.bfloat16),
      "f16": rng.normal(size=(6,)).astype(np.float16),
      "flags": np.array([True, False, True]),
      "empty": np.zeros((0, 4), np.float32),
      "big/é/kernel": rng.normal(size=(300, 257)).astype(np.float32),
  }
  # Many names sharing prefixes exercise prefix compression and restart points.
  for i in range(40):
    tensors[f"decoder/multi_rnn_cell/cell_{i}/lstm_cell/bias"] = np.full((i + 1,), i, np.float32)
  return tensors


def test_crc32c_known_value_and_lanes():
  assert crc32c.value(b"123456789") == 0xE3069283
  data = np.random.default_rng(1).integers(0, 256, 200_003, dtype=np.uint8).tobytes()
  scalar = crc32c._update_scalar(0xFFFFFFFF, data) ^ 0xFFFFFFFF
  assert crc32c.value(data) == scalar
  assert crc32c.extend(crc32c.value(data[:12345]), data[12345:]) == scalar
  assert crc32c.unmask(crc32c.mask(scalar)) == scalar


@pytest.mark.parametrize("config", GOLDEN_CONFIGS)
def test_golden_checkpoint_equals_weights_npz(golden_dir, config):
  folder = golden_dir / config
  with np.load(folder / "weights.npz") as npz:
    want = {k: npz[k] for k in npz.files}
  _assert_same_tensors(tb.read_checkpoint(folder), want)  # directory with moved state file
  _assert_same_tensors(tb.read_checkpoint(folder / "model.ckpt"), want)
  _assert_same_tensors(tb.read_checkpoint(str(folder / "model.ckpt.index")), want)
  listed = tb.list_variables(folder / "model.ckpt")
  assert {k: v[0] for k, v in listed.items()} == {k: v.shape for k, v in want.items()}


@pytest.mark.parametrize("config", GOLDEN_CONFIGS)
def test_rewriting_golden_checkpoint_is_byte_identical(golden_dir, tmp_path, config):
  folder = golden_dir / config
  tb.write_checkpoint(tmp_path / "model.ckpt", tb.read_checkpoint(folder))
  for suffix in (".index", ".data-00000-of-00001"):
    assert (tmp_path / f"model.ckpt{suffix}").read_bytes() == (
        folder / f"model.ckpt{suffix}").read_bytes()


def test_round_trip(tmp_path):
  tensors = _sample_tensors()
  prefix = tb.write_checkpoint(tmp_path / "run" / "model.ckpt-7", tensors)
  _assert_same_tensors(tb.read_checkpoint(prefix), tensors)
  _assert_same_tensors(tb.read_checkpoint(tmp_path / "run"), tensors)  # via state file
  assert tb.list_variables(prefix)["bf16"] == ((4, 3), np.dtype(ml_dtypes.bfloat16))


def test_tar_bundle_and_directory_without_state_file(tmp_path):
  tensors = _sample_tensors()
  tb.write_checkpoint(tmp_path / "ckpt" / "drums.ckpt", tensors, write_state_file=False)
  bundle = tmp_path / "drums.tar"
  with tarfile.open(bundle, "w") as tar:
    for name in os.listdir(tmp_path / "ckpt"):
      tar.add(tmp_path / "ckpt" / name, arcname=name)
  _assert_same_tensors(tb.read_checkpoint(bundle), tensors)
  _assert_same_tensors(tb.read_checkpoint(tmp_path / "ckpt"), tensors)
  tb.write_checkpoint(tmp_path / "ckpt" / "other.ckpt", {"x": np.ones(2)}, write_state_file=False)
  with pytest.raises(tb.CheckpointError, match="exactly one checkpoint"):
    tb.read_checkpoint(tmp_path / "ckpt")


def test_bad_inputs_raise_clear_errors(tmp_path):
  prefix = tb.write_checkpoint(tmp_path / "model.ckpt", _sample_tensors())
  index = (tmp_path / "model.ckpt.index").read_bytes()
  data_path = tmp_path / "model.ckpt.data-00000-of-00001"

  def with_index(content):
    (tmp_path / "model.ckpt.index").write_bytes(content)
    return prefix

  with pytest.raises(tb.CheckpointError, match="shorter than an SSTable footer"):
    tb.read_checkpoint(with_index(index[:20]))
  with pytest.raises(tb.CheckpointError, match="magic"):
    tb.read_checkpoint(with_index(index[:-1]))
  flipped = bytearray(index)
  flipped[30] ^= 0x01
  with pytest.raises(tb.CheckpointError, match="CRC32C"):
    tb.read_checkpoint(with_index(bytes(flipped)))
  with_index(index)
  data = bytearray(data_path.read_bytes())
  data[0] ^= 0x80
  data_path.write_bytes(bytes(data))
  with pytest.raises(tb.CheckpointError, match="CRC32C"):
    tb.read_checkpoint(prefix)
  data_path.write_bytes(bytes(data[:100]))
  with pytest.raises(tb.CheckpointError, match="truncated"):
    tb.read_checkpoint(prefix, verify_checksums=False)
  data_path.unlink()
  with pytest.raises(tb.CheckpointError, match="data shard not found"):
    tb.read_checkpoint(prefix)
  with pytest.raises(tb.CheckpointError, match="index not found"):
    tb.read_checkpoint(tmp_path / "missing.ckpt")
  with pytest.raises(ValueError, match="cannot be written"):
    tb.write_checkpoint(tmp_path / "s.ckpt", {"s": np.array(["a"], dtype=object)})


@pytest.mark.tf
def test_tensorflow_reads_our_checkpoint(tmp_path):
  tf = pytest.importorskip("tensorflow")
  tensors = _sample_tensors()
  prefix = tb.write_checkpoint(tmp_path / "model.ckpt", tensors)
  reader = tf.train.load_checkpoint(prefix)
  assert sorted(reader.get_variable_to_shape_map()) == sorted(tensors)
  _assert_same_tensors({k: np.asarray(reader.get_tensor(k)) for k in tensors}, tensors)
  assert tf.train.latest_checkpoint(str(tmp_path)) == prefix
  # A state file written by TensorFlow (C-escaped path) in a directory with odd characters.
  folder = tmp_path / 'ü "dir"'
  moved = tb.write_checkpoint(folder / "m.ckpt-3", {"x": np.ones(2)}, write_state_file=False)
  tf.compat.v1.train.update_checkpoint_state(str(folder), moved)
  np.testing.assert_array_equal(tb.read_checkpoint(folder)["x"], np.ones(2))


@pytest.mark.tf
def test_tf1_saver_restores_our_checkpoint(golden_dir, tmp_path):
  """What Magenta's TrainedModel does: build variables, ``Saver.restore`` the checkpoint."""
  tf = pytest.importorskip("tensorflow")
  v1 = tf.compat.v1
  weights = tb.read_checkpoint(golden_dir / "hierdec-mel_16bar")
  prefix = tb.write_checkpoint(tmp_path / "model.ckpt", weights)
  with tf.Graph().as_default():
    variables = {k: v1.get_variable(k, shape=v.shape, dtype=tf.as_dtype(v.dtype),
                                    initializer=v1.zeros_initializer())
                 for k, v in weights.items()}
    with v1.Session() as sess:
      v1.train.Saver().restore(sess, v1.train.latest_checkpoint(str(tmp_path)))
      restored = sess.run(variables)
  assert prefix.endswith("model.ckpt")
  _assert_same_tensors(restored, weights)


@pytest.mark.tf
def test_we_read_tensorflow_saver_checkpoints(tmp_path):
  tf = pytest.importorskip("tensorflow")
  v1 = tf.compat.v1
  values = {
      "enc/kernel": np.arange(12, dtype=np.float32).reshape(3, 4),
      "enc/bias": np.linspace(-1, 1, 5),
      "bf": np.array([1.5, -2.0], dtype=ml_dtypes.bfloat16),
      "half": np.array([[0.25]], dtype=np.float16),
      "count": np.array(3, np.int32),
      "names": np.array([b"kick", b"", b"snare" * 100], dtype=object),
  }
  with tf.Graph().as_default():
    variables = [v1.Variable(v, name=k) for k, v in values.items()]
    step = v1.train.get_or_create_global_step()
    with v1.Session() as sess:
      sess.run(v1.global_variables_initializer())
      sess.run(step.assign(1234))
      prefix = v1.train.Saver(variables + [step]).save(sess, str(tmp_path / "model.ckpt"),
                                                       global_step=step)
  got = tb.read_checkpoint(tmp_path)
  assert got["global_step"] == 1234 and prefix.endswith("model.ckpt-1234")
  del got["global_step"]
  _assert_same_tensors(got, values)


@pytest.mark.tf
def test_we_read_tf2_object_checkpoints(tmp_path):
  tf = pytest.importorskip("tensorflow")
  ckpt = tf.train.Checkpoint(w=tf.Variable(np.eye(3, dtype=np.float32)),
                             n=tf.Variable(np.int64(7)))
  prefix = ckpt.write(str(tmp_path / "obj"))
  reader = tf.train.load_checkpoint(prefix)
  want = {k: reader.get_tensor(k) for k in reader.get_variable_to_shape_map()}
  got = tb.read_checkpoint(prefix)  # includes the object-graph string tensor
  assert sorted(got) == sorted(want)
  for k, v in want.items():
    assert (got[k] == v) if isinstance(v, bytes) else np.array_equal(got[k], v), k


@pytest.mark.tf
def test_partitioned_variables_are_listed_and_refused(tmp_path):
  tf = pytest.importorskip("tensorflow")
  v1 = tf.compat.v1
  with tf.Graph().as_default():
    v1.get_variable("part", shape=[10, 4], partitioner=v1.fixed_size_partitioner(2))
    v1.get_variable("plain", initializer=np.arange(3, dtype=np.float32))
    with v1.Session() as sess:
      sess.run(v1.global_variables_initializer())
      prefix = v1.train.Saver().save(sess, str(tmp_path / "model.ckpt"))
  assert {k: v[0] for k, v in tb.list_variables(prefix).items()} == {
      "part": (10, 4), "plain": (3,)}
  with tb.open_checkpoint(prefix) as reader:
    np.testing.assert_array_equal(reader.read("plain"), np.arange(3))
  with pytest.raises(tb.CheckpointError, match="partitioned"):
    tb.read_checkpoint(prefix)
