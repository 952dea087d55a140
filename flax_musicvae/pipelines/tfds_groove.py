r"""The Groove MIDI Dataset through tensorflow-datasets, online or from a local copy.

Magenta trains GrooVAE on ``--tfds_name=groove/2bar-midionly`` / ``groove/4bar-midionly``.
Online, tfds downloads the official zip. Offline, this module feeds tfds a local
copy instead, using the download manager's cache (tensorflow_datasets 4.9.10,
``core/download/download_manager.py``):

* ``DownloadManager._get_checksum_dl_result`` treats
  ``<download_dir>/<dataset name>/<get_dl_fname(url, registered sha256)>`` as an
  already-downloaded file when its ``.INFO`` file exists next to it, and returns the
  *registered* size/checksum without hashing the file.
* ``manual_dir`` does not work for a rebuilt zip: ``_get_manually_downloaded_path``
  hashes the file and ``_register_or_validate_checksums`` raises
  ``NonMatchingChecksumError`` (a re-zipped folder never has the official bytes).

So ``install_local_zip`` puts the zip (built from the dataset folder by
``build_zip`` when only the folder is available) under that name with an INFO file
recording where it came from and its real checksum. Only the MIDI-only configs can be
served this way (the audio configs use the 5 GB zip with WAV files).

TensorFlow and tensorflow-datasets (the ``[data]`` extra) are imported lazily.

Example (a 4bar-midionly build takes about 20 minutes on 2 cores):
  python -m pipelines.tfds_groove --name=groove/4bar-midionly \
    --source_dir=/data/groove-v1.0.0-midionly --data_dir=/tmp/tfds
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil
import tempfile
import zipfile
from typing import Sequence

from flax_musicvae import pipelines
from flax_musicvae.io.digest import file_sha256

MIDI_ONLY_URL = ("https://storage.googleapis.com/magentadata/datasets/groove/"
                 "groove-v1.0.0-midionly.zip")
_ZIP_NAME = "groove-v1.0.0-midionly.zip"
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # fixed timestamps: the same folder gives the same zip


def _tfds():
  try:
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ImportError("the tfds path needs TensorFlow and tensorflow-datasets: "
                      "pip install -r requirements-extras.txt (or the [data] extra)") from e
  return tfds


def build_zip(source_dir: str | os.PathLike, zip_path: str | os.PathLike) -> pathlib.Path:
  """Zips ``source_dir`` (which holds ``groove/``) like the official archive.

  Entries are ``groove/...`` in sorted order with fixed timestamps, so the zip is
  reproducible; its bytes still differ from the official file's.
  """
  source_dir, zip_path = pathlib.Path(source_dir), pathlib.Path(zip_path)
  if not (source_dir / "groove" / "info.csv").is_file():
    raise FileNotFoundError(f"{source_dir} does not contain groove/info.csv; pass the "
                            "folder that holds the unzipped 'groove' directory")
  zip_path.parent.mkdir(parents=True, exist_ok=True)
  with tempfile.NamedTemporaryFile(dir=zip_path.parent, suffix=".tmp", delete=False) as tmp:
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as archive:
      for path in sorted((source_dir / "groove").rglob("*")):
        if path.is_file():
          info = zipfile.ZipInfo(path.relative_to(source_dir).as_posix(), _ZIP_DATE)
          info.compress_type = zipfile.ZIP_DEFLATED
          archive.writestr(info, path.read_bytes())
  os.replace(tmp.name, zip_path)
  return zip_path


def cached_download_path(download_dir: str | os.PathLike, url: str = MIDI_ONLY_URL,
                         dataset_name: str = "groove") -> pathlib.Path:
  """Where tfds looks for an already-downloaded ``url`` (named by its registered sha256)."""
  tfds = _tfds()
  from tensorflow_datasets.core.download import resource  # pylint: disable=g-import-not-at-top
  registered = tfds.builder_cls(dataset_name).url_infos[url]
  return pathlib.Path(download_dir) / dataset_name / resource.get_dl_fname(
      url, registered.checksum)


def install_local_zip(zip_path: str | os.PathLike, download_dir: str | os.PathLike,
                      url: str = MIDI_ONLY_URL, dataset_name: str = "groove") -> pathlib.Path:
  """Places ``zip_path`` where tfds's download manager takes it as ``url``, already downloaded.

  Any earlier extraction of that name is removed so tfds re-extracts this zip.
  Returns the installed path.
  """
  zip_path = pathlib.Path(zip_path)
  target = cached_download_path(download_dir, url, dataset_name)
  target.parent.mkdir(parents=True, exist_ok=True)
  if zip_path.resolve() != target.resolve():
    shutil.copyfile(zip_path, target)
  info = {
      "urls": [url],
      "dataset_names": [dataset_name],
      "original_fname": _ZIP_NAME,
      "url_info": {"size": target.stat().st_size, "checksum": file_sha256(target),
                   "filename": _ZIP_NAME},
      "local_source": str(zip_path.resolve()),
      "note": "local copy installed by pipelines.tfds_groove; not the official bytes",
  }
  target.with_suffix(target.suffix + ".INFO").write_text(json.dumps(info, indent=1))
  shutil.rmtree(pathlib.Path(download_dir) / "extracted" / f"ZIP.{target.name}",
                ignore_errors=True)
  return target


def prepare(name: str, data_dir: str | os.PathLike, *, zip_path: str | os.PathLike | None = None,
            source_dir: str | os.PathLike | None = None):
  """Builds tfds dataset ``name`` (e.g. ``groove/4bar-midionly``) under ``data_dir``.

  With ``zip_path`` or ``source_dir`` (a folder holding ``groove/``) nothing is
  downloaded: the local data is installed in ``<data_dir>/downloads`` first.
  Without them tfds downloads the official zip. An already prepared dataset is
  reused as is. Returns the prepared builder.
  """
  tfds = _tfds()
  builder = tfds.builder(name, data_dir=os.fspath(data_dir))
  download_dir = pathlib.Path(data_dir) / "downloads"
  config = tfds.download.DownloadConfig(try_download_gcs=False)
  if builder.is_prepared():
    return builder
  if zip_path is not None or source_dir is not None:
    if builder.builder_config.include_audio:
      raise ValueError(f"{name} needs the audio zip; only the *-midionly configs can be "
                       "built from a local MIDI-only copy")
    if zip_path is None:
      zip_path = build_zip(source_dir, download_dir / "local" / _ZIP_NAME)
    install_local_zip(zip_path, download_dir, dataset_name=builder.name)
  builder.download_and_prepare(download_dir=download_dir, download_config=config)
  return builder


def load(name: str, split: str, data_dir: str | os.PathLike, **local):
  """``tf.data.Dataset`` of one split (preparing it first); ``local``: see ``prepare``."""
  return prepare(name, data_dir, **local).as_dataset(split=split)


def _parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog="python -m pipelines.tfds_groove",
      description="Build a tensorflow-datasets Groove config (the dataset Magenta's "
      "music_vae_train --tfds_name reads). With --zip or --source_dir it works offline "
      "from a local copy of groove-v1.0.0-midionly; otherwise tfds downloads the "
      "official zip. Building groove/4bar-midionly or 2bar-midionly takes ~20 minutes; "
      "groove/full-midionly takes seconds.",
      formatter_class=argparse.ArgumentDefaultsHelpFormatter)
  parser.add_argument("--name", default="groove/4bar-midionly",
                      help="tfds name: groove/{full,2bar,4bar}-midionly")
  parser.add_argument("--data_dir", required=True, help="tfds data_dir to build into")
  local = parser.add_mutually_exclusive_group()
  local.add_argument("--zip", help="local groove-v1.0.0-midionly.zip (any byte layout)")
  local.add_argument("--source_dir",
                     help="folder holding the unzipped 'groove' directory; zipped first")
  return parser


def main(argv: Sequence[str] | None = None) -> None:
  parser = _parser()
  args = parser.parse_args(argv)
  with pipelines.user_errors(parser):
    builder = prepare(args.name, args.data_dir, zip_path=args.zip, source_dir=args.source_dir)
  for split, info in sorted(builder.info.splits.items()):
    print(f"{args.name} {split}: {info.num_examples} examples")
  print(f"prepared in {builder.data_dir}")


if __name__ == "__main__":
  main()
