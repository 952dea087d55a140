"""Shared test fixtures: paths to ../shared (real data, golden outputs) and small fixtures."""

import os
import pathlib

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
