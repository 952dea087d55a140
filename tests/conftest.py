"""Shared test fixtures: paths to ../shared (real data, golden outputs) and small fixtures."""

import os
import pathlib

import fsspec
from fsspec.implementations import memory
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED = pathlib.Path(os.environ.get("FLAX_MUSICVAE_SHARED", ROOT.parent / "shared"))
GROOVE_DIR = SHARED / "data" / "groove-v1.0.0-midionly" / "groove"
GOLDEN_DIR = SHARED / "reference" / "golden"
FIXTURES = ROOT / "tests" / "fixtures"


@pytest.fixture(scope="session")
def groove_dir() -> pathlib.Path:
  """The full Groove MIDI Dataset folder; tests that need it skip without ../shared."""
  if not (GROOVE_DIR / "info.csv").exists():
    pytest.skip(f"Groove MIDI Dataset not found at {GROOVE_DIR}")
  return GROOVE_DIR


@pytest.fixture(scope="session")
def golden_dir() -> pathlib.Path:
  if not GOLDEN_DIR.exists():
    pytest.skip(f"golden outputs not found at {GOLDEN_DIR}")
  return GOLDEN_DIR


class FakeGcs(memory.MemoryFileSystem):
  """An in-memory stand-in for gcsfs, under the gs:// scheme."""
  protocol = ("gs", "gcs")
  store, pseudo_dirs = {}, [""]

  def __init__(self, *args, finalize_on_close=True, **kwargs):
    del finalize_on_close
    super().__init__(*args, **kwargs)


@pytest.fixture
def fake_gcs(monkeypatch) -> FakeGcs:
  """gs:// paths (through etils.epath) on an empty in-memory bucket; returns its filesystem.

  epath keeps one filesystem per scheme (an lru_cache): it is cleared before and after, so
  every test sees this bucket and no other test's.
  """
  from etils.epath import backend  # pylint: disable=g-import-not-at-top
  from etils.epath import gpath  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(gpath, "_is_tf_installed", lambda: False)
  monkeypatch.setattr(FakeGcs, "store", {})
  monkeypatch.setattr(FakeGcs, "pseudo_dirs", [""])
  fsspec.register_implementation("gcs", FakeGcs, clobber=True)
  get_filesystem = backend._FileSystemSpecBackend._get_filesystem  # pylint: disable=protected-access
  get_filesystem.cache_clear()
  yield FakeGcs()
  get_filesystem.cache_clear()
