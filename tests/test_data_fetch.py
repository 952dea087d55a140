"""Data on demand: the Groove zip downloaded from a local HTTP server (never the internet),
verified, resumed, refused when corrupt; one error line offline or without music21."""

import contextlib
import hashlib
import http.server
import io
import socket
import sys
import threading
import zipfile

import pytest

from flax_musicvae import data_fetch
from flax_musicvae.pipelines import folk_melodies
from flax_musicvae.pipelines import groove
from tests.conftest import FIXTURES


def groove_zip_bytes() -> bytes:
  """The Groove fixtures laid out like the official zip (``groove/info.csv``, ...)."""
  buffer = io.BytesIO()
  root = FIXTURES / "groove"
  with zipfile.ZipFile(buffer, "w") as z:
    for path in sorted(root.rglob("*")):
      if path.is_file() and path.name != "README.md":
        z.write(path, "groove/" + path.relative_to(root).as_posix())
  return buffer.getvalue()


class Server:
  """Serves ``body`` at ``/file.zip`` on localhost, honouring ``Range`` when ``ranges``."""

  def __init__(self, body: bytes, ranges: bool = True):
    self.body, self.ranges, self.requests = body, ranges, []
    server = self

    class Handler(http.server.BaseHTTPRequestHandler):

      def do_GET(self):  # pylint: disable=invalid-name
        server.requests.append(self.headers.get("Range"))
        body, status = server.body, 200
        requested = self.headers.get("Range")
        if requested and server.ranges:
          start = int(requested.removeprefix("bytes=").rstrip("-"))
          body, status = body[start:], 206
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

      def log_message(self, *args):
        del args

    self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}/file.zip"
    self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,),
                                    daemon=True)

  def __enter__(self) -> "Server":
    self._thread.start()
    return self

  def __exit__(self, *exc_info):
    self._httpd.shutdown()
    self._httpd.server_close()


@contextlib.contextmanager
def serving_groove(monkeypatch, body: bytes | None = None, expected: bytes | None = None,
                   ranges: bool = True):
  """A server of ``body`` (default: the fixture zip) set as the Groove mirror, expecting
  ``expected``'s size and checksum (default: ``body``'s)."""
  body = groove_zip_bytes() if body is None else body
  expected = body if expected is None else expected
  with Server(body, ranges) as server:
    monkeypatch.setenv("FLAX_MUSICVAE_GROOVE_URL", server.url)
    monkeypatch.setenv("FLAX_MUSICVAE_GROOVE_SIZE", str(len(expected)))
    monkeypatch.setenv("FLAX_MUSICVAE_GROOVE_SHA256", hashlib.sha256(expected).hexdigest())
    yield server


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
  monkeypatch.setenv(data_fetch.CACHE_ENV, str(tmp_path / "cache"))


def test_default_download_is_the_published_zip(monkeypatch):
  for name in ("URL", "SIZE", "SHA256"):
    monkeypatch.delenv(f"FLAX_MUSICVAE_GROOVE_{name}", raising=False)
  assert data_fetch.groove_download() == data_fetch.GROOVE
  assert data_fetch.GROOVE.url.endswith("/groove/groove-v1.0.0-midionly.zip")


def test_download_verifies_and_caches(tmp_path, monkeypatch, capsys):
  with serving_groove(monkeypatch) as server:
    root = data_fetch.groove_root(str(tmp_path / "nowhere" / "groove-v1.0.0-midionly"))
    assert root == tmp_path / "cache" / "groove-v1.0.0-midionly.zip"
    assert root.read_bytes() == server.body
    assert not root.with_name(root.name + ".part").exists()
    assert "Verified" in capsys.readouterr().err
    # Cached: no second request; the pipeline reads the official layout from it.
    assert data_fetch.groove_root("") == root and server.requests == [None]
  assert set(groove.read_split_index(root)) == {"train", "validation", "test"}


def test_existing_or_other_paths_are_not_replaced(tmp_path, monkeypatch):
  with serving_groove(monkeypatch) as server:
    assert data_fetch.groove_root(FIXTURES / "groove") == FIXTURES / "groove"
    other = tmp_path / "my_drums"
    assert data_fetch.groove_root(str(other)) == other
    with pytest.raises(FileNotFoundError, match="no info.csv"):
      groove.read_split_index(other)
    assert server.requests == []


def test_corrupt_download_is_deleted_and_reported(tmp_path, monkeypatch):
  good = groove_zip_bytes()
  bad = bytearray(good)
  bad[len(bad) // 2] ^= 0xFF
  with serving_groove(monkeypatch, bytes(bad), expected=good):
    with pytest.raises(data_fetch.DownloadError, match=r"corrupt file .*deleted it"):
      data_fetch.groove_root("")
  assert list((tmp_path / "cache").iterdir()) == []


@pytest.mark.parametrize("ranges", [True, False], ids=["range", "server_ignores_range"])
def test_partial_download_resumes(tmp_path, monkeypatch, ranges):
  body = groove_zip_bytes()
  part = tmp_path / "cache" / "groove-v1.0.0-midionly.zip.part"
  part.parent.mkdir()
  part.write_bytes(body[:1000])
  with serving_groove(monkeypatch, body, ranges=ranges) as server:
    root = data_fetch.groove_root("")
  assert server.requests == ["bytes=1000-"]
  assert root.read_bytes() == body and not part.exists()


def closed_port_url() -> str:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
  return f"http://127.0.0.1:{port}/groove-v1.0.0-midionly.zip"


def test_offline_is_one_error_line(tmp_path, monkeypatch, capsys):
  monkeypatch.setenv("FLAX_MUSICVAE_GROOVE_URL", closed_port_url())
  with pytest.raises(SystemExit) as exit_info:
    groove.main(["--cache_dir", str(tmp_path / "arrays"), "--splits", "test"])
  assert exit_info.value.code == 2
  error = capsys.readouterr().err.strip().splitlines()[-1]
  assert error.startswith("error: could not download http://127.0.0.1:")
  assert f"put groove-v1.0.0-midionly.zip (from that address) in {tmp_path / 'cache'}" in error


def test_groove_cli_downloads_when_no_root_is_given(tmp_path, monkeypatch, capsys):
  with serving_groove(monkeypatch):
    groove.main(["--cache_dir", str(tmp_path / "arrays"), "--splits", "validation",
                 "--workers", "1"])
  assert "validation: 2 files, 11 windows, 9 examples" in capsys.readouterr().out


def test_folk_corpus_without_music21_is_one_error_line(monkeypatch, capsys):
  monkeypatch.setitem(sys.modules, "music21", None)  # import music21 -> ImportError
  with pytest.raises(SystemExit) as exit_info:
    folk_melodies.main(["--no_progress", "--limit_files", "1"])
  assert exit_info.value.code == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and err[0].startswith("error: the folk corpus ships inside music21")
  assert "pip install music21" in err[0]
