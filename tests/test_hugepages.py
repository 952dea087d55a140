"""hugepages.reexec: the program starts again once, same PID and arguments, and its
malloc'd memory (as XLA's CPU buffers are) is backed by transparent huge pages."""

import os
import subprocess
import sys

import pytest

from flax_musicvae import hugepages

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Prints its PID and arguments before reexec() (so twice when it re-executes), then the
# tunables it runs with and how much of a fresh 64 MiB malloc is in huge pages.
PROGRAM = """
import ctypes, os, sys
from flax_musicvae import hugepages
print("start", os.getpid(), sys.argv[1:], sep="|", flush=True)
hugepages.reexec()
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
block = libc.malloc(64 << 20)
ctypes.memset(block, 1, 64 << 20)
with open("/proc/self/smaps_rollup") as f:
  huge_kb = [int(l.split()[1]) for l in f if l.startswith("AnonHugePages")][0]
print("end", os.getpid(), os.environ.get("GLIBC_TUNABLES"), huge_kb, sep="|")
"""


def run(tmp_path, **env) -> list[list[str]]:
  script = tmp_path / "program.py"
  script.write_text(PROGRAM)
  environ = {k: v for k, v in os.environ.items()
             if k not in ("GLIBC_TUNABLES", hugepages.OPT_OUT)}
  environ.update(env, PYTHONPATH=ROOT)
  out = subprocess.run([sys.executable, str(script), "--flag=1", "two"], env=environ,
                       capture_output=True, text=True, check=True, timeout=60).stdout
  return [line.split("|") for line in out.splitlines()]


pytestmark = pytest.mark.skipif(not hugepages.available(),
                                reason="needs Linux, glibc and transparent huge pages")


def test_reexec_starts_the_same_program_once_with_huge_pages(tmp_path):
  lines = run(tmp_path)
  starts = [l for l in lines if l[0] == "start"]
  (end,) = [l for l in lines if l[0] == "end"]
  assert len(starts) == 2                                   # ran again, once
  assert starts[0][1] == starts[1][1] == end[1]             # same process
  assert starts[0][2] == starts[1][2] == "['--flag=1', 'two']"
  _, _, tunables, huge_kb = end
  assert tunables == hugepages.TUNABLE
  assert int(huge_kb) >= 32 << 10                           # most of the 64 MiB block


def test_without_it_malloc_uses_small_pages(tmp_path):
  lines = run(tmp_path, **{hugepages.OPT_OUT: "0"})
  assert [l[0] for l in lines] == ["start", "end"]          # not re-executed
  assert lines[1][2:] == ["None", "0"]


def test_other_tunables_are_kept(tmp_path):
  lines = run(tmp_path, GLIBC_TUNABLES="glibc.malloc.trim_threshold=1000000")
  tunables = lines[-1][2]
  assert tunables == "glibc.malloc.trim_threshold=1000000:" + hugepages.TUNABLE
