"""Matmul FLOPs of a JAX function, counted from its jaxpr.

Every ``dot_general`` costs ``2 * prod(output shape) * prod(contracted dims)``; an
equation inside a ``scan`` body counts ``length`` times, and sub-jaxprs of ``pjit``,
``remat``, ``custom_vjp`` / ``custom_jvp`` calls and ``cond`` branches (the most
expensive one) are walked. Used by ``bench/`` to report model FLOP utilisation for any
config (flat, hierarchical, multi-output decoders) without per-architecture formulas.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import jax
from jax.extend import core as jex_core


def _dot_flops(eqn) -> int:
  (lhs_contract, _), _ = eqn.params["dimension_numbers"]
  lhs_shape = eqn.invars[0].aval.shape
  contracted = math.prod(lhs_shape[d] for d in lhs_contract)
  return 2 * math.prod(eqn.outvars[0].aval.shape) * contracted


def _sub_jaxprs(eqn) -> list[tuple[Any, int]]:
  """(jaxpr, multiplicity) pairs nested in ``eqn``."""
  params = eqn.params
  if eqn.primitive.name == "scan":
    return [(params["jaxpr"], params["length"])]
  if eqn.primitive.name == "cond":
    return [(max(params["branches"], key=lambda b: jaxpr_matmul_flops(b)), 1)]
  if eqn.primitive.name == "while":
    raise ValueError("while loops have no static trip count; use lax.scan")
  return [(v, 1) for k, v in params.items()
          if k in ("jaxpr", "call_jaxpr", "fun_jaxpr") and v is not None]


def jaxpr_matmul_flops(jaxpr) -> int:
  """Matmul FLOPs of a (closed) jaxpr."""
  if isinstance(jaxpr, jex_core.ClosedJaxpr):
    jaxpr = jaxpr.jaxpr
  total = 0
  for eqn in jaxpr.eqns:
    if eqn.primitive.name == "dot_general":
      total += _dot_flops(eqn)
    for sub, times in _sub_jaxprs(eqn):
      total += times * jaxpr_matmul_flops(sub)
  return total


def matmul_flops(fn: Callable, *args, **kwargs) -> int:
  """Matmul FLOPs of one call ``fn(*args, **kwargs)`` (traced, not run)."""
  return jaxpr_matmul_flops(jax.make_jaxpr(fn)(*args, **kwargs))
