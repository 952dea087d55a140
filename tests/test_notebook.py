"""notebooks/latent_interpolation.ipynb runs end to end on a tiny groove_4bar model.

nbclient is not a dependency: the code cells are executed in order with ``exec`` in one
namespace, which is what a kernel does minus the display machinery.
"""

import json

import numpy as np

from conftest import FIXTURES, ROOT
from flax_musicvae import config_lib
from flax_musicvae import inference

NOTEBOOK = ROOT / "notebooks" / "latent_interpolation.ipynb"
BEATS = sorted((FIXTURES / "groove").rglob("*_beat_*.mid"))


def code_cells(path):
  cells = json.loads(path.read_text())["cells"]
  return ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]


def test_notebook_executes(tmp_path, monkeypatch):
  monkeypatch.setattr(inference.loading, "CACHE_DIR", tmp_path / "cache")
  cfg = config_lib.tiny(config_lib.load("groove_4bar"))
  workdir = inference.MusicVAEModel.init_random(cfg, seed=3).save(tmp_path / "run")
  monkeypatch.setenv("FLAX_MUSICVAE_WORKDIR", str(workdir))
  monkeypatch.setenv("FLAX_MUSICVAE_BEAT_A", str(BEATS[0]))
  monkeypatch.setenv("FLAX_MUSICVAE_BEAT_B", str(BEATS[1]))
  monkeypatch.setenv("FLAX_MUSICVAE_NOTEBOOK_OUT", str(tmp_path / "out"))
  namespace = {"__name__": "__notebook__"}
  for source in code_cells(NOTEBOOK):
    exec(compile(source, str(NOTEBOOK), "exec"), namespace)  # pylint: disable=exec-used
  steps = namespace["NUM_STEPS"]
  assert len(list((tmp_path / "out").glob("step_*.mid"))) == steps
  assert (tmp_path / "out" / "interpolation.png").read_bytes()[:4] == b"\x89PNG"
  # The path starts and ends at the greedy decodes of the two posterior means.
  ends = namespace["model"].decode_to_tensors(namespace["mu"], None)
  np.testing.assert_array_equal(namespace["tensors"][[0, -1]], ends)


def test_notebook_has_no_outputs_committed():
  cells = json.loads(NOTEBOOK.read_text())["cells"]
  assert all(not c.get("outputs") for c in cells if c["cell_type"] == "code")
  assert len(code_cells(NOTEBOOK)) >= 4
