"""Export code uses the models' public API only: no ``x._member`` on objects but self/cls."""

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1] / "flax_musicvae"
EXPORT_MODULES = sorted(ROOT.glob("export/*.py")) + [
    ROOT / "music_rnn" / "export.py", ROOT / "checkpoints" / "magentajs.py",
    ROOT / "lite_runner.py"]
#: Private members of other libraries that the export needs: (file, attribute) -> why.
ALLOWED = {("export/tflite.py", "_experimental_unfold_large_splat_constant"):
               "TensorFlow's TFLiteConverter flag (no public setting)"}


def private_uses(source: str) -> list[tuple[int, str]]:
  """(line, name) of each private attribute read/write on something other than self/cls,
  and each private name imported (``from m import _x``, ``import m._x``)."""
  found = []
  for node in ast.walk(ast.parse(source)):
    if isinstance(node, ast.Attribute):
      name = node.attr
      own = isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")
      if name.startswith("_") and not name.startswith("__") and not own:
        found.append((node.lineno, name))
    elif isinstance(node, (ast.Import, ast.ImportFrom)):
      modules = [node.module or ""] if isinstance(node, ast.ImportFrom) else []
      names = [a.name for a in node.names] + modules
      found += [(node.lineno, n) for n in names
                if any(p.startswith("_") and not p.startswith("__") for p in n.split("."))]
  return sorted(found)


def test_the_check_finds_private_access():
  source = ("from flax_musicvae.models import decoders\n"
            "from flax_musicvae.models.decoders import _cumsum\n"
            "def f(dec, self):\n"
            "  self._ok = dec._conductor_init(1)\n"
            "  return decoders._merge_states([]), dec.__class__\n")
  assert private_uses(source) == [(2, "_cumsum"), (4, "_conductor_init"),
                                  (5, "_merge_states")]


def test_export_modules_use_no_private_members():
  assert len(EXPORT_MODULES) >= 9 and all(p.exists() for p in EXPORT_MODULES)
  bad = []
  for path in EXPORT_MODULES:
    rel = path.relative_to(ROOT).as_posix()
    bad += [f"{rel}:{line}: {name}" for line, name in private_uses(path.read_text())
            if (rel, name) not in ALLOWED]
  assert not bad, "private members used by export code:\n" + "\n".join(bad)
