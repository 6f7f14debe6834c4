"""Imports run one way, down the layers, with no circle: counted from every import statement in laclip/,
jobs/ and cli/ (those inside functions too), the folders mapped to their import names as setup.py maps them.

The layers, lowest first. A module may import the modules of its own layer and of the layers its layer
`uses`, never one above or beside it: training and evaluation are two stages that know nothing of each other,
the renderers (jobs/) never reach the cluster client, and the container library never imports the CLI or the
renderers.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FOLDERS = {"laclip": "laclip", "jobs": "laclip_jobs", "cli": "laclip_cli"}

# name -> (module prefixes, layers it uses). A prefix names a module and everything under it; the most
# specific prefix decides a module's layer.
LAYERS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    # what every stage shares: errors, digests, typed-config plumbing, storage, the store layout,
    # leases, the container entrypoint, dataset readers, model configs, follow-up Jobs
    "base": (("laclip",), ()),
    "client": (("laclip.cluster",), ("base",)),  # the Kubernetes API client
    "rewrite": (("laclip.rewrite",), ("base",)),
    "rewrite_import": (("laclip.rewrite_import",), ("base", "rewrite")),
    "train": (("laclip.train",), ("base", "client", "rewrite")),  # reads rewrite outputs; asks for eval Jobs
    "eval": (("laclip.eval",), ("base",)),
    "fetch": (("laclip.fetch",), ("base", "eval")),  # fetches the sets the eval suites name
    "plan": (("laclip.plan",), ("base", "eval")),  # counts the images of the eval suites
    "jobs": (("laclip_jobs",), ("base", "rewrite", "rewrite_import", "train", "eval", "fetch")),
    "cli": (("laclip_cli",), ("base", "client", "rewrite", "rewrite_import", "train", "eval", "fetch", "plan",
                              "jobs")),
}


def modules(repo: Path = REPO) -> dict[str, Path]:
    found = {}
    for folder, package in FOLDERS.items():
        for path in sorted((repo / folder).rglob("*.py")):
            parts = [package, *path.relative_to(repo / folder).with_suffix("").parts]
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _known(name: str, mods) -> str | None:
    """The module `name` is, or is inside of (`from laclip import layout` names laclip.layout)."""
    while name and name not in mods:
        name = name.rpartition(".")[0]
    return name or None


def imports(module: str, source: str, is_package: bool, mods) -> set[str]:
    """The project modules `source` imports, wherever the statement sits."""
    out = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out.update(_known(a.name, mods) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package this module is in
                package = module if is_package else module.rpartition(".")[0]
                for _ in range(node.level - 1):
                    package = package.rpartition(".")[0]
                base = f"{package}.{base}" if base else package
            out.update(_known(f"{base}.{a.name}", mods) for a in node.names)
    out.discard(None)
    out.discard(module)
    return out


def graph(repo: Path = REPO) -> dict[str, set[str]]:
    mods = modules(repo)
    return {m: imports(m, p.read_text(), p.name == "__init__.py", mods) for m, p in mods.items()}


def layer_of(module: str, layers=LAYERS) -> str | None:
    best = None
    for name, (prefixes, _) in layers.items():
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and (best is None or len(prefix) > best[1]):
                best = (name, len(prefix))
    return best[0] if best else None


def upward(edges: dict[str, set[str]], layers=LAYERS) -> list[str]:
    """Imports from a layer to one it does not use, as `module -> module (layer -> layer)`."""
    bad = []
    for module, targets in sorted(edges.items()):
        mine = layer_of(module, layers)
        for target in sorted(targets):
            theirs = layer_of(target, layers)
            if mine is None or theirs is None:
                bad.append(f"{module} -> {target}: in no layer")
            elif theirs != mine and theirs not in layers[mine][1]:
                bad.append(f"{module} -> {target} ({mine} -> {theirs})")
    return bad


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Every set of modules that import each other, directly or through others (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            part = []
            while not part or part[-1] != v:
                part.append(stack.pop())
            if len(part) > 1:
                found.append(sorted(part))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_no_import_circle():
    assert not circles(graph()), circles(graph())


def test_no_import_runs_up_or_across_the_layers():
    bad = upward(graph())
    assert not bad, "\n".join(bad)


def test_the_layers_are_layers():
    """Each layer uses only layers listed before it, so the order above is an order."""
    names = list(LAYERS)
    for i, (name, (_, uses)) in enumerate(LAYERS.items()):
        assert set(uses) <= set(names[:i]), name


def test_the_checks_can_fail(tmp_path):
    """An import circle, an import up a layer, one across to a sibling stage and a relative import of a
    higher layer are all found in a small tree built here."""
    files = {
        "laclip/__init__.py": "",
        "laclip/errors.py": "from laclip.eval import tasks\n",  # base -> eval: up
        "laclip/eval/__init__.py": "",
        "laclip/eval/tasks.py": "def f():\n    from laclip.eval import worker\n",  # a circle, inside a function
        "laclip/eval/worker.py": "from . import tasks\nimport laclip.train.model\n",  # eval -> train: across
        "laclip/train/__init__.py": "",
        "laclip/train/model.py": "from ..eval import worker\n",  # train -> eval, relative
        "jobs/__init__.py": "",
        "cli/__init__.py": "",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    edges = graph(tmp_path)
    assert edges["laclip.eval.worker"] == {"laclip.eval.tasks", "laclip.train.model"}
    assert circles(edges) == [["laclip.eval.tasks", "laclip.eval.worker", "laclip.train.model"]]
    assert upward(edges) == ["laclip.errors -> laclip.eval.tasks (base -> eval)",
                             "laclip.eval.worker -> laclip.train.model (eval -> train)",
                             "laclip.train.model -> laclip.eval.worker (train -> eval)"]
    assert not upward({"laclip_cli.main": {"laclip.eval.worker", "laclip_jobs"}})
