"""Huge pages for the host memory XLA's CPU backend computes in.

A training step allocates its large buffers (the stacked gate inputs, residuals and
gradients of the recurrences, tens to hundreds of MB) afresh every step. With 4 KiB pages
their first touch and the TLB cost 10-20 % of a groove_4bar step on a CPU
(``docs/performance.md``). glibc's malloc backs them with transparent huge pages when the
tunable ``glibc.malloc.hugetlb=1`` is set, but glibc reads tunables only when a process
starts, so :func:`reexec` starts the program again, once, with it set.
"""

from __future__ import annotations

import os
import platform
import sys

TUNABLE = "glibc.malloc.hugetlb=1"
OPT_OUT = "FLAX_MUSICVAE_HUGE_PAGES"   # "0": leave the process as it is
THP_SETTING = "/sys/kernel/mm/transparent_hugepage/enabled"


def available() -> bool:
  """Linux with glibc, and transparent huge pages not switched off by the kernel."""
  if sys.platform != "linux" or platform.libc_ver()[0] != "glibc":
    return False
  try:
    with open(THP_SETTING, encoding="ascii") as f:
      return "[never]" not in f.read()
  except OSError:
    return False


def wanted() -> bool:
  """Whether :func:`reexec` would start the program again."""
  return (os.environ.get(OPT_OUT, "1") != "0"
          and TUNABLE not in os.environ.get("GLIBC_TUNABLES", "").split(":")
          and available())


def reexec() -> None:
  """Replaces this process (same PID, same command line) by one whose malloc uses huge
  pages; returns at once when it already does, when ``FLAX_MUSICVAE_HUGE_PAGES=0`` or
  where there are none. Call it first thing in a program's entry point, never in a
  library function: it does not return when it re-executes."""
  if not wanted():
    return
  tunables = [t for t in os.environ.get("GLIBC_TUNABLES", "").split(":") if t]
  env = dict(os.environ, GLIBC_TUNABLES=":".join(tunables + [TUNABLE]))
  sys.stdout.flush()
  sys.stderr.flush()
  os.execve(sys.executable, [sys.executable] + sys.orig_argv[1:], env)
