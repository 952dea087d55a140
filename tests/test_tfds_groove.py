"""tfds Groove from the local folder, offline: same files and splits as our loader."""

import hashlib
import json
import socket

import pytest

from flax_musicvae.pipelines import groove, tfds_groove

def _no_network(*args, **kwargs):
  raise AssertionError(f"test tried to reach the network: {args}")


@pytest.fixture(scope="module")
def offline():
  """Fails any test that opens a network connection or resolves a host name."""
  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(socket.socket, "connect", _no_network)
    patch.setattr(socket, "getaddrinfo", _no_network)
    yield


@pytest.fixture(scope="module")
def full_midionly(groove_dir, offline, tmp_path_factory):
  """groove/full-midionly built from the local folder into a tmp data_dir (seconds)."""
  pytest.importorskip("tensorflow_datasets")
  data_dir = tmp_path_factory.mktemp("tfds")
  builder = tfds_groove.prepare("groove/full-midionly", data_dir, source_dir=groove_dir.parent)
  return builder, data_dir


@pytest.mark.tf
def test_same_files_and_splits_as_our_loader(full_midionly, groove_dir):
  builder, data_dir = full_midionly
  index = groove.read_split_index(groove_dir)
  assert sorted(builder.info.splits) == sorted(index) == ["test", "train", "validation"]
  for split, rows in index.items():
    by_id = {row["id"]: row for row in rows}
    dataset = tfds_groove.load("groove/full-midionly", split, data_dir)
    examples = list(dataset.as_numpy_iterator())
    assert len(examples) == len(rows) == builder.info.splits[split].num_examples
    assert {e["id"].decode() for e in examples} == set(by_id)
    for example in examples:
      row = by_id[example["id"].decode()]
      assert example["midi"] == (groove_dir / row["midi_filename"]).read_bytes()
      assert example["bpm"] == int(row["bpm"])


@pytest.mark.tf
def test_installed_zip_is_trusted_not_hashed(full_midionly):
  """The tfds cache file carries the registered name but our bytes; INFO says so."""
  _, data_dir = full_midionly
  installed = tfds_groove.cached_download_path(data_dir / "downloads")
  registered = tfds_groove._tfds().builder_cls("groove").url_infos[tfds_groove.MIDI_ONLY_URL]
  actual = hashlib.sha256(installed.read_bytes()).hexdigest()
  assert actual != registered.checksum
  info = json.loads(installed.with_suffix(".zip.INFO").read_text())
  assert info["url_info"]["checksum"] == actual


def test_zip_is_reproducible_with_the_official_layout(groove_dir, tmp_path):
  first = tfds_groove.build_zip(groove_dir.parent, tmp_path / "a.zip")
  second = tfds_groove.build_zip(groove_dir.parent, tmp_path / "b.zip")
  assert first.read_bytes() == second.read_bytes()
  assert groove.read_split_index(first) == groove.read_split_index(groove_dir)


def test_build_zip_rejects_wrong_folder(tmp_path):
  with pytest.raises(FileNotFoundError, match="groove/info.csv"):
    tfds_groove.build_zip(tmp_path, tmp_path / "x.zip")


@pytest.mark.tf
def test_manual_dir_rejects_a_rebuilt_zip(groove_dir, offline, tmp_path):
  """Why install_local_zip exists: tfds hashes manual_dir files against the registry."""
  tfds = pytest.importorskip("tensorflow_datasets")
  manual = tmp_path / "manual"
  tfds_groove.build_zip(groove_dir.parent, manual / "groove-v1.0.0-midionly.zip")
  builder = tfds.builder("groove/full-midionly", data_dir=str(tmp_path / "data"))
  config = tfds.download.DownloadConfig(manual_dir=str(manual), try_download_gcs=False)
  from tensorflow_datasets.core.download import download_manager  # pylint: disable=g-import-not-at-top
  with pytest.raises(download_manager.NonMatchingChecksumError, match="wrong checksum"):
    builder.download_and_prepare(download_config=config)


@pytest.mark.tf
def test_audio_configs_need_the_audio_zip(groove_dir, offline, tmp_path):
  pytest.importorskip("tensorflow_datasets")
  with pytest.raises(ValueError, match="midionly"):
    tfds_groove.prepare("groove/full-16000hz", tmp_path, source_dir=groove_dir.parent)
