"""SIGTERM/SIGINT at random moments of a training subprocess (bench/drills.py's drill at
test size): exit code 128 + signal, a checkpoint at the last completed step every time,
and the resumed run bit-identical to an uninterrupted one."""

import importlib.util

from tests.conftest import ROOT


def test_signals_at_random_moments(tmp_path):
  spec = importlib.util.spec_from_file_location("drills", ROOT / "bench" / "drills.py")
  drills = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(drills)
  result = drills.signal_drill(drills.Drills(tmp_path), signals=6, seed=1)
  tries = result["tries"]
  assert {t["signal"] for t in tries} == {"SIGTERM", "SIGINT"} and len(tries) == 6
  assert result["all_exit_codes_128_plus_signal"], tries
  assert result["all_checkpoints_at_last_completed_step"], tries
  assert result["resume_bit_identical"]
  assert result["final_step"] > 5  # the signals did land during training
  assert result["exit_s_max"] < 15, tries
