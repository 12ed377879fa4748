"""ARCHITECTURE.md's rules, checked on the source: stages import only downwards, no imports
inside functions between engine modules (the CLI alone imports its commands lazily), no
private name imported across modules, and the engine never imports a plugin module."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import REPO

ENGINE = REPO / "engine"
# lowest first: a module may import from its own layer and the layers before it
LAYERS = [
    {"errors", "files", "records", "runs", "metrics", "progress", "device", "threads", "weights", "image_tensors", "keypoints",
     "registry", "plugin", "plugin_adapters", "components", "synthetic", "__init__"},
    {"store"},
    {"inputs"},
    {"shortlist", "embedding", "pattern"},
    {"scoring"},
    {"calibration"},
    {"decision"},
    {"outputs"},
    {"commands", "training"},
    {"benchmark"},
    {"cli", "__main__"},
]
LAYER_OF = {name: i for i, names in enumerate(LAYERS) for name in names}


def _modules() -> list[Path]:
    return sorted(p for p in ENGINE.rglob("*.py"))


def _top(module: str) -> str:
    """reid_engine.inputs.views -> inputs; reid_engine.registry.spec -> registry."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _imports(path: Path):
    """(node, module imported, inside a function?) for every import of reid_engine in ``path``."""
    tree = ast.parse(path.read_text())
    functions = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    nested = {id(sub) for f in functions for sub in ast.walk(f)}
    type_only = {id(sub) for n in ast.walk(tree) if isinstance(n, ast.If) and "TYPE_CHECKING" in ast.unparse(n.test)
                 for sub in ast.walk(n)}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("reid_engine"):
            yield node, node.module, id(node) in nested, id(node) in type_only
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("reid_engine"):
                    yield node, alias.name, id(node) in nested, id(node) in type_only


def _own_layer(path: Path) -> int:
    rel = path.relative_to(ENGINE)
    return LAYER_OF[rel.parts[0] if len(rel.parts) > 1 else rel.stem]


def test_a_module_imports_only_from_its_layer_and_below():
    wrong = []
    for path in _modules():
        own = _own_layer(path)
        for node, module, _, type_only in _imports(path):
            target = _top(module)
            if target == "plugins":
                wrong.append(f"{path}:{node.lineno}: the engine never imports a plugin module ({module})")
            elif not type_only and target in LAYER_OF and LAYER_OF[target] > own:
                wrong.append(f"{path}:{node.lineno}: imports {module} from a later stage; move the shared code down")
    assert not wrong, "\n".join(wrong)


def test_no_imports_inside_functions_between_engine_modules():
    # the CLI alone imports its commands lazily: `reid-engine profiles` starts without torch
    inside = [f"{path}:{node.lineno}: {module}" for path in _modules() if path.name != "cli.py"
              for node, module, nested, _ in _imports(path) if nested]
    assert not inside, "imports inside functions:\n" + "\n".join(inside)


def test_no_private_name_is_imported_across_modules():
    private = [f"{path}:{node.lineno}: {a.name} from {module}"
               for path in _modules() + sorted((REPO / "plugins").rglob("*.py")) + sorted((REPO / "registry").rglob("*.py"))
               for node, module, _, _ in _imports(path)
               if isinstance(node, ast.ImportFrom) and not module.startswith("reid_engine.plugins.")
               for a in node.names if a.name.startswith("_")]
    assert not private, "private names imported:\n" + "\n".join(private)


def test_every_engine_package_has_a_layer():
    packages = {p.relative_to(ENGINE).parts[0] if p.parent != ENGINE else p.stem for p in _modules()} - {"__init__"}
    assert packages <= set(LAYER_OF), f"add {sorted(packages - set(LAYER_OF))} to LAYERS (and ARCHITECTURE.md)"


def test_every_package_is_in_the_distribution():
    import tomllib

    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    folders = {"engine": "reid_engine", "registry": "reid_engine.registry", "plugins": "reid_engine.plugins"}
    found = {folders[i.parent.relative_to(REPO).parts[0]] + "".join(f".{p}" for p in i.parent.relative_to(REPO).parts[1:])
             for top in folders for i in (REPO / top).rglob("__init__.py") if "/build/" not in str(i)}
    assert found <= listed, f"pyproject.toml [tool.setuptools] packages lacks {sorted(found - listed)}: a wheel would miss them"
