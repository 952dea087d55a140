"""The core install (no [data]/[export]/[lite] extras) must import and work without them."""

import subprocess
import sys

from conftest import ROOT

BLOCK = "import sys\nfor m in ('tensorflow', 'tensorflow_datasets', 'music21', 'ai_edge_litert'):\n  sys.modules[m] = None\n"


def test_core_modules_import_without_tensorflow():
  code = BLOCK + (
      "import flax_musicvae.main, flax_musicvae.inference, pipelines.groove, "
      "pipelines.convert_dir, pipelines.note_sequence_io, pipelines.note_sequence_dataset, "
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
      "from pipelines import tfds_groove\n"
      "try:\n  tfds_groove.load('groove/full-midionly', 'train', '/nonexistent')\n"
      "except ImportError as e:\n  print('ImportError:', e)\n")
  result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
  assert "ImportError: the tfds path needs TensorFlow" in result.stdout, (
      result.stdout + result.stderr[-2000:])
