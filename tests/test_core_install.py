"""The core install (no [data]/[export]/[lite] extras) must import and work without them."""

import os
import subprocess
import sys

from conftest import ROOT

BLOCK = "import sys\nfor m in ('tensorflow', 'tensorflow_datasets', 'music21', 'ai_edge_litert'):\n  sys.modules[m] = None\n"


def test_core_modules_import_without_tensorflow():
  code = BLOCK + (
      "import flax_musicvae.main, flax_musicvae.inference, flax_musicvae.pipelines.groove, "
      "flax_musicvae.pipelines.convert_dir, flax_musicvae.pipelines.note_sequence_io, "
      "flax_musicvae.pipelines.note_sequence_dataset, "
      "flax_musicvae.checkpoints.magenta_import, flax_musicvae.checkpoints.magentajs\n"
      "from flax_musicvae.models import vae\n"
      "print('ok')\n")
  result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-2000:]
  assert result.stdout.strip().endswith("ok")


def test_tensorflow_extra_missing_is_a_clear_error():
  """The tfds path names the extra to install instead of failing obscurely."""
  code = BLOCK + (
      "from flax_musicvae.pipelines import tfds_groove\n"
      "try:\n  tfds_groove.load('groove/full-midionly', 'train', '/nonexistent')\n"
      "except ImportError as e:\n  print('ImportError:', e)\n")
  result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
  assert "ImportError: the tfds path needs TensorFlow" in result.stdout, (
      result.stdout + result.stderr[-2000:])


def _core_distributions() -> set[str]:
  """Canonical names of the distributions a core install brings: pyproject's dependencies
  and, transitively, what each requires (no optional extras of theirs)."""
  import importlib.metadata as md  # pylint: disable=g-import-not-at-top
  import tomllib  # pylint: disable=g-import-not-at-top
  from packaging.requirements import Requirement  # pylint: disable=g-import-not-at-top
  from packaging.utils import canonicalize_name  # pylint: disable=g-import-not-at-top
  project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
  todo = [(Requirement(r), "") for r in project["dependencies"]]
  seen = {canonicalize_name(project["name"])}
  while todo:
    req, extra = todo.pop()
    if req.marker and not req.marker.evaluate({"extra": extra}):
      continue
    name = canonicalize_name(req.name)
    if name in seen and not req.extras:
      continue
    seen.add(name)
    try:
      requires = md.distribution(req.name).requires or []
    except md.PackageNotFoundError:
      continue
    for e in ("", *req.extras):
      todo += [(Requirement(r), e) for r in requires]
  return seen


_CORE_ONLY = """
import importlib.metadata as md, json, sys
from packaging.utils import canonicalize_name
allowed = set(json.loads(sys.argv[1]))
for top, dists in md.packages_distributions().items():  # as if the extras were not installed
  if not any(canonicalize_name(d) in allowed for d in dists):
    sys.modules[top] = None
sys.argv = ["generate"] + sys.argv[2:]
from flax_musicvae import generate, eval_samples, data_fetch, main  # noqa
sys.exit(generate.main(sys.argv[1:]))
"""


def test_core_install_brings_what_generate_needs(tmp_path):
  """generate (shipped model, PNG, WAV, jax.export's cache) imports nothing that only the
  extras install: matplotlib and flatbuffers once came only with music21 / TensorFlow."""
  import json  # pylint: disable=g-import-not-at-top
  beat = next((ROOT / "tests" / "fixtures" / "groove").rglob("*_beat_4-4.mid"))
  env = {**os.environ, "FLAX_MUSICVAE_CACHE": str(tmp_path / "cache")}
  for mode in (["--mode=sample", "--num_outputs=1"],
               ["--mode=humanize", f"--input_midi_1={beat}", "--start_bar=1"]):
    result = subprocess.run(
        [sys.executable, "-c", _CORE_ONLY, json.dumps(sorted(_core_distributions())), *mode,
         "--wav", f"--output_dir={tmp_path}"], cwd=ROOT, env=env, capture_output=True,
        text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert ".png" in result.stdout and ".wav" in result.stdout, result.stdout
