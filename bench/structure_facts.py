"""Structure facts of the library (issue 15): sizes, import arrows, cycles, config loaders.

Measures the working tree, or a git revision extracted with ``git archive``, and writes
bench/results/structure_facts.json. The library is the packages pyproject.toml installs
(``[tool.setuptools.packages.find] include``). Import arrows are module -> module imports
within it, counted apart at module level and inside functions. Config loaders (code that loads
a config file by itself) are searched in every .py file of the repository; flag libraries in its
entry modules (``__main__`` guards, ``__main__.py``, console scripts), tests excepted. Export
private accesses use tests/test_export_private_access.py's rule and allowance.

  python bench/structure_facts.py [--rev 13081bc] [--vs HEAD] [--output PATH]
"""

import argparse
import ast
import fnmatch
import json
import pathlib
import re
import subprocess
import sys
import tempfile
import tomllib

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
# The private-access rule (and allowed TensorFlow flag) of the test that guards export code.
from tests.test_export_private_access import (  # pylint: disable=wrong-import-position
    ALLOWED, private_uses)

SELF = pathlib.Path(__file__).resolve().relative_to(ROOT).as_posix()
EXPORT_GLOBS = ("flax_musicvae/export/*.py", "flax_musicvae/music_rnn/export.py",
                "flax_musicvae/checkpoints/magentajs.py", "flax_musicvae/lite_runner.py")
LOADER_DEFS = re.compile(r"load_config|tiny_config|small_config|^tiny$")
FLAG_LIBS = {"absl.flags": re.compile(r"from absl import [^\n]*\bflags\b|absl\.flags"),
             "config_flags": re.compile(r"\bconfig_flags\b"),
             "argparse": re.compile(r"^\s*import argparse\b", re.M)}
LARGE_LINES = 400


def git(*args: str) -> str:
  return subprocess.run(["git", "-C", str(ROOT), *args], check=True, capture_output=True,
                        text=True).stdout.strip()


def sources(root: pathlib.Path, worktree: bool) -> dict[str, str]:
  """Relative path -> text of every .py file (the working tree: tracked or not ignored)."""
  if worktree:
    paths = git("ls-files", "-co", "--exclude-standard", "--", "*.py").splitlines()
  else:
    paths = [p.relative_to(root).as_posix() for p in root.rglob("*.py")]
  return {p: (root / p).read_text() for p in sorted(paths) if (root / p).is_file() and p != SELF}


def module_name(path: str) -> str:
  parts = path.removesuffix(".py").split("/")
  return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def owner(name: str, modules: set[str]) -> str | None:
  """The longest prefix of dotted ``name`` that is a library module."""
  parts = name.split(".")
  for end in range(len(parts), 0, -1):
    if ".".join(parts[:end]) in modules:
      return ".".join(parts[:end])
  return None


def import_statements(tree: ast.AST) -> list[tuple[ast.Import | ast.ImportFrom, bool]]:
  """(statement, inside a function) for each import statement."""
  found = []

  def visit(node: ast.AST, local: bool) -> None:
    for child in ast.iter_child_nodes(node):
      if isinstance(child, (ast.Import, ast.ImportFrom)):
        found.append((child, local))
      visit(child, local or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef,
                                               ast.Lambda)))
  visit(tree, False)
  return found


def imported_names(node: ast.Import | ast.ImportFrom, path: str) -> list[str]:
  """Dotted names a statement imports (``from a import b`` -> ``a.b``; relative resolved)."""
  if isinstance(node, ast.Import):
    return [alias.name for alias in node.names]
  base = node.module or ""
  if node.level:
    package = module_name(path).split(".")
    if not path.endswith("__init__.py"):
      package = package[:-1]
    package = package[:len(package) - node.level + 1]
    base = ".".join(package + ([base] if base else []))
  return [base if alias.name == "*" else f"{base}.{alias.name}" for alias in node.names]


def cycles(edges: set[tuple[str, str]]) -> list[list[str]]:
  """Strongly connected components of more than one module (Tarjan)."""
  graph: dict[str, list[str]] = {}
  for src, dst in edges:
    graph.setdefault(src, []).append(dst)
  index: dict[str, int] = {}
  low: dict[str, int] = {}
  stack: list[str] = []
  found = []

  def connect(node: str) -> None:
    index[node] = low[node] = len(index)
    stack.append(node)
    for nxt in graph.get(node, []):
      if nxt not in index:
        connect(nxt)
        low[node] = min(low[node], low[nxt])
      elif nxt in stack:
        low[node] = min(low[node], index[nxt])
    if low[node] == index[node]:
      component = []
      while not component or component[-1] != node:
        component.append(stack.pop())
      if len(component) > 1:
        found.append(sorted(component))

  for node in sorted(graph):
    if node not in index:
      connect(node)
  return sorted(found)


def first_string(node: ast.AST) -> str:
  """The leading literal text of a string expression (constant, f-string or ``+``)."""
  if isinstance(node, ast.Constant) and isinstance(node.value, str):
    return node.value
  if isinstance(node, ast.JoinedStr) and node.values:
    return first_string(node.values[0])
  if isinstance(node, ast.BinOp):
    return first_string(node.left)
  return ""


def config_loaders(path: str, tree: ast.AST) -> list[str]:
  """``file:line: what`` for each piece of code that loads a config file by itself."""
  found = []
  for node in ast.walk(tree):
    if isinstance(node, ast.Call):
      func = node.func
      name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
      if name in ("spec_from_file_location", "DEFINE_config_file") or (
          name == "import_module" and node.args
          and first_string(node.args[0]).startswith("configs.")):
        found.append(f"{path}:{node.lineno}: {name}")
    elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and LOADER_DEFS.search(
        node.name):
      found.append(f"{path}:{node.lineno}: def {node.name}")
  return sorted(found, key=lambda s: (s.split(":")[0], int(s.split(":")[1])))


def measure(root: pathlib.Path, worktree: bool) -> dict:
  """The facts of the tree at ``root``."""
  texts = sources(root, worktree)
  trees = {path: ast.parse(text, path) for path, text in texts.items()}
  project = tomllib.loads((root / "pyproject.toml").read_text())
  find = project["tool"]["setuptools"]["packages"]["find"]
  packages = sorted({p.split("/")[0] for p in texts if p.count("/") == 1
                     and p.endswith("/__init__.py")
                     and any(fnmatch.fnmatch(p.split("/")[0], pat) for pat in find["include"])})
  library = [p for p in texts if p.split("/")[0] in packages]
  modules = {module_name(p) for p in library}
  lines = {p: len(texts[p].splitlines()) for p in library}
  arrows: dict[bool, set[tuple[str, str]]] = {False: set(), True: set()}
  local_imports: dict[str, int] = {}
  for path in library:
    src = module_name(path)
    for node, local in import_statements(trees[path]):
      local_imports[path] = local_imports.get(path, 0) + local
      for name in imported_names(node, path):
        dst = owner(name, modules)
        if dst and dst != src:
          arrows[local].add((src, dst))
  export_files = sorted({p for pattern in EXPORT_GLOBS for p in library
                         if fnmatch.fnmatch(p, pattern)})
  private = [f"{p}:{line}: {name}" for p in export_files for line, name in private_uses(texts[p])
             if (p.removeprefix("flax_musicvae/"), name) not in ALLOWED]
  scripts = {target.split(":")[0].replace(".", "/") + ".py"
             for target in project.get("project", {}).get("scripts", {}).values()}
  entries = [p for p, text in texts.items() if not p.startswith("tests/") and (
      p in scripts or p.endswith("__main__.py") or re.search(r"__name__ == .__main__.", text))]
  flags = {lib: [p for p in entries if pattern.search(texts[p])]
           for lib, pattern in FLAG_LIBS.items()}
  largest = sorted(lines.items(), key=lambda item: -item[1])
  return {
      "packages": packages,
      "py_files": len(library),
      "lines": sum(lines.values()),
      "largest_files": dict(largest[:10]),
      f"files_over_{LARGE_LINES}_lines": {p: n for p, n in largest if n > LARGE_LINES},
      "import_arrows_module_level": len(arrows[False]),
      "import_arrows_in_functions": len(arrows[True]),
      "import_cycles_module_level": cycles(arrows[False]),
      "import_cycles_with_function_imports": cycles(arrows[False] | arrows[True]),
      "function_local_imports": sum(local_imports.values()),
      "function_local_imports_per_file": dict(sorted(
          ((p, n) for p, n in local_imports.items() if n), key=lambda item: -item[1])),
      "config_loaders": [hit for p in texts for hit in config_loaders(p, trees[p])],
      "export_files": export_files,
      "export_private_accesses": private,
      "flag_libraries": {**flags, "neither": [
          p for p in entries if not any(p in used for used in flags.values())]},
  }


def facts_of(rev: str | None) -> dict:
  """Facts of ``rev`` (``None``: the working tree) with the commit they were measured at."""
  if rev is None:
    return {"revision": "working tree", "commit": git("rev-parse", "HEAD"),
            "uncommitted_changes": bool(git("status", "--porcelain", "--", "*.py")),
            **measure(ROOT, worktree=True)}
  commit = git("rev-parse", "--verify", f"{rev}^{{commit}}")
  with tempfile.TemporaryDirectory() as tmp:
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", commit, "--", "pyproject.toml",
                              ":(glob)**/*.py"], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
    return {"revision": rev, "commit": commit, **measure(pathlib.Path(tmp), worktree=False)}


def count(value) -> int:
  return value if isinstance(value, int) else len(value)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--rev", help="git revision to measure (default: the working tree)")
  parser.add_argument("--vs", help="a second git revision, printed beside the first")
  parser.add_argument("--output", type=pathlib.Path,
                      default=ROOT / "bench" / "results" / "structure_facts.json")
  args = parser.parse_args()
  runs = [facts_of(args.rev)] + ([facts_of(args.vs)] if args.vs else [])
  keys = [k for k, v in runs[0].items() if isinstance(v, (int, list, dict))
          and not isinstance(v, bool) and k not in ("packages", "largest_files", "export_files")]
  print(f"{'':44}" + "".join(f"{r['revision'][:12]:>14}" for r in runs))
  print(f"{'commit':44}" + "".join(f"{r['commit'][:12]:>14}" for r in runs))
  for key in keys:
    if key == "flag_libraries":
      for lib in runs[0][key]:
        print(f"{'entry modules using ' + lib:44}"
              + "".join(f"{len(r[key][lib]):>14}" for r in runs))
    else:
      print(f"{key:44}" + "".join(f"{count(r[key]):>14}" for r in runs))
  for r in runs:
    print(f"\n{r['revision']} ({r['commit'][:12]}) largest files:")
    print("\n".join(f"  {n:5d} {p}" for p, n in r["largest_files"].items()))
  args.output.parent.mkdir(parents=True, exist_ok=True)
  args.output.write_text(json.dumps({"revisions": runs}, indent=1) + "\n")
  print(f"\nwrote {args.output}")


if __name__ == "__main__":
  main()
