"""Data on demand: published dataset files downloaded once into a cache, verified.

A download goes to ``<cache>/<name>.part`` and resumes from there (an HTTP Range
request) when interrupted; once its size and SHA-256 match the published ones it is
renamed to ``<cache>/<name>``, so a file under that name has been verified. The cache is
``$FLAX_MUSICVAE_CACHE`` or ``~/.cache/flax_musicvae``. Standard library only.

The Groove MIDI Dataset (``groove-v1.0.0-midionly.zip``, size and checksum from tfds'
``checksums.tsv``) can come from a mirror: ``$FLAX_MUSICVAE_GROOVE_URL``, with
``$FLAX_MUSICVAE_GROOVE_SIZE`` and ``$FLAX_MUSICVAE_GROOVE_SHA256`` when its file differs.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import sys
import urllib.error
import urllib.request

import tqdm

from flax_musicvae.io.digest import file_sha256

CACHE_ENV = "FLAX_MUSICVAE_CACHE"
_CHUNK = 1 << 16


@dataclasses.dataclass(frozen=True)
class Download:
  """A published file: where it is, its size and SHA-256, and its name in the cache."""
  url: str
  size: int
  sha256: str
  filename: str


GROOVE_NAME = "groove-v1.0.0-midionly"
GROOVE = Download(
    url=f"https://storage.googleapis.com/magentadata/datasets/groove/{GROOVE_NAME}.zip",
    size=3260318,
    sha256="651cbc524ffb891be1a3e46d89dc82a1cecb09a57c748c7b45b844c4841dcc1e",
    filename=f"{GROOVE_NAME}.zip")


class DownloadError(FileNotFoundError):
  """The data is not here and could not be fetched; the message says what to do."""


def cache_dir() -> pathlib.Path:
  return pathlib.Path(os.environ.get(CACHE_ENV) or "~/.cache/flax_musicvae").expanduser()


def groove_download() -> Download:
  """:data:`GROOVE`, with the mirror settings of the environment applied."""
  env = os.environ.get
  return Download(url=env("FLAX_MUSICVAE_GROOVE_URL") or GROOVE.url,
                  size=int(env("FLAX_MUSICVAE_GROOVE_SIZE") or GROOVE.size),
                  sha256=env("FLAX_MUSICVAE_GROOVE_SHA256") or GROOVE.sha256,
                  filename=GROOVE.filename)


def _progress(total: int, initial: int, name: str):
  return tqdm.tqdm(total=total, initial=initial, unit="B", unit_scale=True, desc=name,
                   disable=not sys.stderr.isatty(), leave=False)


def _receive(download: Download, part: pathlib.Path, timeout: float) -> None:
  """Appends the rest of the file to ``part`` (all of it when the server ignores Range)."""
  have = part.stat().st_size if part.exists() else 0
  if have >= download.size:
    return
  request = urllib.request.Request(download.url, headers={"User-Agent": "flax-musicvae"})
  if have:
    request.add_header("Range", f"bytes={have}-")
  with urllib.request.urlopen(request, timeout=timeout) as response:
    resumed = have and response.status == 206
    mode = "ab" if resumed else "wb"
    have = have if resumed else 0
    with part.open(mode) as f, _progress(download.size, have, download.filename) as bar:
      for chunk in iter(lambda: response.read(_CHUNK), b""):
        f.write(chunk)
        bar.update(len(chunk))
        have += len(chunk)
        if have > download.size:
          break


def fetch(download: Download, directory: str | os.PathLike | None = None,
          timeout: float = 60.0) -> pathlib.Path:
  """``directory/filename`` (default :func:`cache_dir`), downloaded and verified if absent.

  ``DownloadError`` when the server cannot be reached (the partial file is kept for the
  next try) or the file does not match its size and SHA-256 (it is deleted).
  """
  directory = pathlib.Path(directory) if directory is not None else cache_dir()
  target = directory / download.filename
  if target.is_file():
    return target
  directory.mkdir(parents=True, exist_ok=True)
  part = target.with_name(target.name + ".part")
  resuming = part.exists() and part.stat().st_size
  print(f"{'Resuming' if resuming else 'Downloading'} {download.url} "
        f"({download.size / 1e6:.1f} MB) to {target}", file=sys.stderr, flush=True)
  try:
    _receive(download, part, timeout)
  except (urllib.error.URLError, OSError, ValueError) as e:
    reason = e if isinstance(e, urllib.error.HTTPError) else getattr(e, "reason", e)
    raise DownloadError(
        f"could not download {download.url} ({reason}): put {download.filename} "
        f"(from that address) in {directory}, or pass the dataset's folder or zip as "
        "the data path") from e
  size, digest = part.stat().st_size, file_sha256(part)
  if size != download.size or digest != download.sha256:
    part.unlink()
    raise DownloadError(
        f"{download.url} gave a corrupt file ({size} bytes, sha256 {digest[:12]}..., "
        f"expected {download.size} bytes, sha256 {download.sha256[:12]}...): deleted it; "
        "run again to download it afresh")
  part.replace(target)
  print(f"Verified {target} (sha256 {digest[:12]}...)", file=sys.stderr, flush=True)
  return target


def names_groove_dataset(path: str | os.PathLike) -> bool:
  """True for ``""`` and paths named like the official dataset (folder or zip)."""
  name = pathlib.Path(path).name if path else ""
  return not path or name in (GROOVE_NAME, GROOVE.filename)


def groove_root(path: str | os.PathLike = "") -> pathlib.Path:
  """Where to read the Groove MIDI Dataset named by ``path``.

  ``path`` itself when it exists or does not name the official dataset (the reader then
  says what is wrong with it); otherwise the verified zip in the cache, downloaded first
  if needed (``DownloadError`` when that fails).
  """
  if path and (pathlib.Path(path).exists() or not names_groove_dataset(path)):
    return pathlib.Path(path)
  download = groove_download()
  target = cache_dir() / download.filename
  if not target.is_file():
    print(f"Groove MIDI Dataset not found{f' at {path}' if path else ''}: fetching it",
          file=sys.stderr, flush=True)
  return fetch(download)
