"""launch/colab_tpu.ipynb runs end to end on CPU with 8 fake devices, as in CI.

``FLAX_MUSICVAE_CI=1`` skips its Colab-only steps (Drive, TPU wheel, TensorBoard); the
code cells run in order in one namespace (as tests/test_notebook.py does), in a fresh
process because the device count is fixed when JAX starts. The notebook is then run a
second time, as after a disconnect: it finds the run finished at its last checkpoint
instead of starting over (continuing a run mid-way is test_train's exact-resume test).
"""

import json
import os
import subprocess
import sys
import textwrap

from flax_musicvae import workdir as workdir_lib
from tests.conftest import FIXTURES, ROOT
from tests.test_notebook import code_cells
from tests.test_train import groove_subset

NOTEBOOK = ROOT / "launch" / "colab_tpu.ipynb"

_RUNNER = textwrap.dedent("""
    import json, os, sys
    import jax
    NOTEBOOK = sys.argv[2]
    with open(NOTEBOOK) as f:
      cells = ["".join(c["source"]) for c in json.load(f)["cells"] if c["cell_type"] == "code"]
    jax.config.update("jax_compilation_cache_dir", sys.argv[1])  # the rerun compiles nothing
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    for run in ("first", "second"):
      print(f"=== {run} run", flush=True)
      namespace = {"__name__": "__notebook__"}
      for source in cells:
        exec(compile(source, NOTEBOOK, "exec"), namespace)
""")


def test_colab_notebook_runs_on_eight_cpu_devices_and_reruns(tmp_path):
  data = groove_subset(FIXTURES / "groove", tmp_path / "groove", {"train": 1, "validation": 2})
  workdir, out = tmp_path / "drive" / "groove_4bar", tmp_path / "samples"
  env = dict(os.environ, FLAX_MUSICVAE_CI="1", JAX_PLATFORMS="cpu",
             XLA_FLAGS="--xla_force_host_platform_device_count=8 "
                       "--xla_backend_optimization_level=0",
             FLAX_MUSICVAE_WORKDIR=str(workdir), FLAX_MUSICVAE_NOTEBOOK_OUT=str(out),
             FLAX_MUSICVAE_DATA=str(data), FLAX_MUSICVAE_CACHE_DIR=str(tmp_path / "cache"))
  proc = subprocess.run([sys.executable, "-c", _RUNNER, str(tmp_path / "jax_cache"), str(NOTEBOOK)],
                        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  first, second = proc.stdout.split("=== second run")
  # The batch adapts to the device count: 10 asked, 8 devices -> 8.
  assert "8 CPU device(s): batch 8 (1 per device), rounded from 10" in first
  assert "learning rate 0.001 (Magenta's, decaying to 1e-05)" in first
  # Rerunning the notebook resumes the run: nothing trained twice, each step logged once.
  assert "0 -> 4" in first and "4 -> 4" in second and "0 -> 4" not in second
  metrics = workdir_lib.read_metrics(workdir)
  assert [(m["split"], m["step"]) for m in metrics] == [
      ("train", 2), ("eval", 2), ("train", 4), ("eval", 4)]
  assert workdir_lib.load_config(workdir).train.batch_size == 8
  # Listening: four grooves as MIDI, a picture and WAVs from the shipped renderer.
  assert sorted(p.name for p in out.glob("*.wav")) == [f"groove_{i}.wav" for i in range(4)]
  assert all(p.read_bytes()[:4] == b"RIFF" and p.stat().st_size > 1000
             for p in out.glob("*.wav"))
  assert (out / "grooves.png").read_bytes()[:4] == b"\x89PNG"
  assert second.count("rendered by") == 4


def test_colab_notebook_is_plain_python_without_outputs():
  """Every code cell runs outside IPython (no ! or % lines); Colab-only calls are guarded."""
  cells = json.loads(NOTEBOOK.read_text())["cells"]
  assert all(not c.get("outputs") for c in cells if c["cell_type"] == "code")
  sources = code_cells(NOTEBOOK)
  for source in sources:
    compile(source, str(NOTEBOOK), "exec")
    assert not any(line.lstrip().startswith(("!", "%")) for line in source.splitlines())
  colab_only = [s for s in sources if "google.colab" in s or "get_ipython" in s]
  assert colab_only and all("if IN_COLAB" in s for s in colab_only)
