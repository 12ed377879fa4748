"""The shape of the code: lines per module, the longest functions, and the layering rules'
counts (engine imports inside functions, private names imported, plugin modules imported).

    python benchmarks/code_map.py [REPO] [--functions N]

REPO defaults to this checkout; pass an old worktree (``git worktree add /tmp/old REV``) to
compare. Used for issue 14's before/after module map.
"""

from __future__ import annotations

import argparse
import ast
from pathlib import Path


def modules(repo: Path) -> list[Path]:
    return sorted(p for d in ("engine", "registry") for p in (repo / d).rglob("*.py"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("repo", nargs="?", type=Path, default=Path(__file__).resolve().parents[1])
    parser.add_argument("--functions", type=int, default=10, help="longest functions listed")
    args = parser.parse_args()
    repo = args.repo.resolve()
    functions, total = [], 0
    inside = private = plugin = 0
    for path in modules(repo):
        text = path.read_text()
        rel = path.relative_to(repo)
        n = len(text.splitlines())
        total += n
        print(f"{n:6d}  {rel}")
        tree = ast.parse(text)
        nested = {id(s) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
                  for s in ast.walk(f)}
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                functions.append((node.end_lineno - node.lineno + 1, f"{rel}:{node.name}"))
            if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("reid_engine")):
                module = ("." * node.level) + (node.module or "")
                if rel.parts[0] == "engine":
                    inside += id(node) in nested and rel.name != "cli.py"
                    plugin += "plugins" in module
                private += sum(a.name.startswith("_") for a in node.names)
    print(f"{len(modules(repo))} modules, {total} lines")
    print("longest functions:")
    for n, name in sorted(functions, reverse=True)[: args.functions]:
        print(f"{n:6d}  {name}")
    print(f"engine imports inside functions (cli.py aside): {inside}; private names imported across modules: "
          f"{private}; engine imports of plugin modules: {plugin}")


if __name__ == "__main__":
    main()
