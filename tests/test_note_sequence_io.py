"""TFRecord NoteSequence collections without TensorFlow: round trips, TF interop, corruption."""

import pytest
from note_seq.protobuf import music_pb2

from flax_musicvae.pipelines import note_sequence_io as nsio


def _sequences() -> list[music_pb2.NoteSequence]:
  """An empty proto (0-byte record), a small one and one large enough for the lane CRC path."""
  small = music_pb2.NoteSequence(id="/id/midi/c/1", filename="a.mid", collection_name="c")
  small.tempos.add(qpm=97.0)
  small.time_signatures.add(numerator=3, denominator=4)
  small.notes.add(pitch=36, velocity=100, start_time=0.0, end_time=0.1, is_drum=True)
  large = music_pb2.NoteSequence(id="/id/midi/c/2", filename="sub/b.mid")
  for i in range(3000):
    large.notes.add(pitch=36 + i % 40, velocity=1 + i % 127, start_time=i * 0.01,
                    end_time=i * 0.01 + 0.05, is_drum=True)
  large.total_time = 30.05
  return [music_pb2.NoteSequence(), small, large]


def test_round_trip(tmp_path):
  path = tmp_path / "c.tfrecord"
  assert nsio.write_note_sequences(path, _sequences()) == 3
  assert list(nsio.read_note_sequences(path)) == _sequences()


def test_framing_layout(tmp_path):
  """Header layout: uint64 LE length, masked CRC of those 8 bytes, data, masked CRC of data."""
  path = tmp_path / "one.tfrecord"
  nsio.write_records(path, [b"abc"])
  raw = path.read_bytes()
  assert len(raw) == 8 + 4 + 3 + 4
  assert raw[:8] == (3).to_bytes(8, "little")
  assert raw[12:15] == b"abc"


def _corrupt(path, offset: int) -> None:
  raw = bytearray(path.read_bytes())
  raw[offset] ^= 0x01
  path.write_bytes(bytes(raw))


def test_bad_data_crc_names_file_and_record(tmp_path):
  path = tmp_path / "c.tfrecord"
  seqs = _sequences()
  nsio.write_note_sequences(path, seqs)
  first_two = 2 * 16 + seqs[1].ByteSize()  # record 0 is empty: 16 bytes of framing
  _corrupt(path, first_two + 12 + 5)  # a data byte of record 2
  with pytest.raises(nsio.TFRecordCorruptionError, match=r"c\.tfrecord: record 2 .*CRC32C.*data"):
    list(nsio.read_note_sequences(path))
  assert len(list(nsio.read_note_sequences(path, verify=False))) == 3


def test_bad_length_crc(tmp_path):
  path = tmp_path / "c.tfrecord"
  nsio.write_note_sequences(path, _sequences())
  _corrupt(path, 16 + 9)  # the length-CRC of record 1
  with pytest.raises(nsio.TFRecordCorruptionError, match="record 1 .*length"):
    list(nsio.iter_records(path))


@pytest.mark.parametrize("cut", [3, 14, 20])
def test_truncated_file(tmp_path, cut):
  path = tmp_path / "c.tfrecord"
  nsio.write_records(path, [b"", b"0123456789"])
  path.write_bytes(path.read_bytes()[:16 + cut])
  with pytest.raises(nsio.TFRecordCorruptionError, match=r"c\.tfrecord: record 1 is truncated"):
    list(nsio.iter_records(path))


def test_record_that_is_not_a_note_sequence(tmp_path):
  path = tmp_path / "c.tfrecord"
  nsio.write_records(path, [b"\xff\xff\xff"])
  with pytest.raises(ValueError, match="record 0 is not a NoteSequence"):
    list(nsio.read_note_sequences(path))


@pytest.mark.tf
def test_ours_read_by_tensorflow(tmp_path):
  tf = pytest.importorskip("tensorflow")
  path = tmp_path / "ours.tfrecord"
  nsio.write_note_sequences(path, _sequences())
  records = [r.numpy() for r in tf.data.TFRecordDataset(str(path))]
  assert [music_pb2.NoteSequence.FromString(r) for r in records] == _sequences()


@pytest.mark.tf
def test_tensorflow_read_by_ours(tmp_path):
  tf = pytest.importorskip("tensorflow")
  path = tmp_path / "tf.tfrecord"
  with tf.io.TFRecordWriter(str(path)) as writer:
    for ns in _sequences():
      writer.write(ns.SerializeToString())
  assert list(nsio.read_note_sequences(path)) == _sequences()
  nsio.write_note_sequences(tmp_path / "ours.tfrecord", _sequences())
  assert (tmp_path / "ours.tfrecord").read_bytes() == path.read_bytes()
