"""The package's shape: core/ is rooms only, no import cycles, and the 0.1 import paths still work."""

import ast
import subprocess
import sys
from pathlib import Path

import vsynth
from vsynth.deprecations import MOVED

PACKAGE = Path(vsynth.__file__).parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Every vsynth module -> the vsynth modules it imports anywhere (module level, functions, TYPE_CHECKING)."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
                targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
            else:
                continue
            edges |= {t for t in targets if t in modules and t != name}
        graph[name] = edges
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_no_import_cycles():
    graph = import_graph()
    # a package __init__ importing its own sub-module is not a cycle worth the name, except through others
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_the_cycle_finder_finds_cycles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_core_holds_only_sub_packages():
    core = PACKAGE / "core"
    loose = sorted(p.name for p in core.glob("*.py") if p.name != "__init__.py")
    assert loose == []
    assert {p.name for p in core.iterdir() if p.is_dir() and (p / "__init__.py").exists()} == {"host", "media", "diffusion", "run"}


def test_old_import_paths_warn_and_work():
    """A 0.1 plugin's imports keep working for one release, with a DeprecationWarning naming the new path."""
    code = (
        "import warnings; warnings.simplefilter('error', DeprecationWarning)\n"
        "try:\n    from vsynth.core.specs import ModelSpec\nexcept DeprecationWarning as w:\n    print(w)\n"
        "warnings.simplefilter('ignore')\n"
        "from vsynth.core.specs import ModelSpec, Params, WeightsSpec\n"
        "from vsynth.core.bridge import Bridge, BridgeInputs, BridgeResult\n"
        "from vsynth.core.models import Conditioning, Denoiser, EvalCounter, ImageModel, Runtime, Sources\n"
        "from vsynth.core.registry import Registrar, get_registry\n"
        "from vsynth.core import sampling, tiny\n"
        "from vsynth.core.progress import Stages\n"
        "import vsynth.core.host.specs as new\n"
        "assert ModelSpec is new.ModelSpec and tiny.TINY_MODELS\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "vsynth.core.specs moved to vsynth.core.host.specs" in out
    assert out.strip().endswith("ok")


def test_every_old_path_resolves():
    code = "import importlib, warnings; warnings.simplefilter('ignore')\n" + "".join(
        f"importlib.import_module({old!r})\n" for old in MOVED
    )
    subprocess.run([sys.executable, "-c", code], check=True)
