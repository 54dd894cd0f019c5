"""The rules the layout keeps (doc/ARCHITECTURE.md), checked on the imports the code holds.

Every ``import`` statement counts, those inside functions too: a lazy import is still an arrow between two layers.
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "spectratorch"
TORCH = ("torch", "lightning", "torchmetrics", "pytorch_lightning")

# reason: what runs on a PC with only the inference install (onnxruntime, numpy, pandas), and what the page runs.
TORCH_FREE = ("contract", "config", "errors", "options", "transforms", "inference", "metrics", "outputs", "logs",
              "data.schema", "data.io", "data.unpickle", "data.resolve", "data.targets", "data.splits", "data.raw",
              "data.synthetic", "app")
# reason: (layer, layers it must never import).
NEVER = {
    "data": ("models", "training", "export", "report", "pipelines"),
    "models": ("data", "training", "export", "report", "pipelines"),
    "training": ("pipelines", "report", "export"),
    "export": ("pipelines"),
    "report": ("pipelines", "training"),
    "contract": ("data", "models", "training", "export", "report", "pipelines", "app"),
    "metrics": ("data", "models", "training", "export", "report", "pipelines", "app"),
    "inference": ("models", "training", "export.onnx", "report", "pipelines"),
    "app": ("models", "training", "export.onnx", "pipelines"),
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> dict[str, set[str]]:
    """Every module of the package and the absolute names it imports."""
    found = {}
    for path in PACKAGE.rglob("*.py"):
        name = _module_name(path)
        names = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module)
                names.update(f"{node.module}.{alias.name}" for alias in node.names)
        found[name] = names
    return found


IMPORTS = _imports()


def _own(name: str) -> str | None:
    """``spectratorch.data.io`` -> ``data.io``; None for other packages."""
    if name == "spectratorch" or not name.startswith("spectratorch."):
        return None
    return name.removeprefix("spectratorch.")


def _in(module: str, layer: str) -> bool:
    return module == layer or module.startswith(layer + ".")


def _reachable(module: str) -> set[str]:
    """The package's modules ``module`` imports, directly or through others."""
    seen, todo = set(), [module]
    while todo:
        current = todo.pop()
        for name in IMPORTS.get(current, ()):
            own = _own(name)
            if own is not None and own in IMPORTS and own not in seen:
                seen.add(own)
                todo.append(own)
    return seen


def test_the_package_is_read():
    assert {"contract", "inference", "data.schema", "models.registry", "cli"} <= set(IMPORTS)


@pytest.mark.parametrize("root", TORCH_FREE)
def test_torch_free_modules_reach_no_torch(root):
    modules = [m for m in IMPORTS if _in(m, root)]
    assert modules, root
    offenders = {}
    for module in modules:
        for reached in {module} | _reachable(module):
            torch_names = sorted(n for n in IMPORTS[reached] if n.split(".")[0] in TORCH)
            if torch_names:
                offenders[f"{module} -> {reached}"] = torch_names
    assert offenders == {}


@pytest.mark.parametrize("layer", sorted(NEVER))
def test_layers_never_import_what_sits_above_them(layer):
    arrows = sorted(f"{module} imports {name}" for module, names in IMPORTS.items() if _in(module, layer)
                    for name in names if (own := _own(name)) is not None
                    and any(_in(own, banned) for banned in NEVER[layer]))
    assert arrows == []


def test_only_the_entry_points_import_the_pipelines():
    allowed = ("cli", "api", "estimator", "pipelines")
    arrows = sorted(f"{module} imports {name}" for module, names in IMPORTS.items()
                    if not any(_in(module, a) for a in allowed)
                    for name in names if (own := _own(name)) is not None and _in(own, "pipelines"))
    assert arrows == []


def test_only_the_cli_parses_arguments():
    parsers = sorted(module for module, names in IMPORTS.items() if "argparse" in names and module != "cli")
    assert parsers == []
