"""The stage contract, read from the source: one store layout, one exit code for permanent errors,
renderers that never talk to a cluster, a container library that imports neither the CLI nor
the renderers."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("laclip", "jobs", "cli", "bench")
PREFIXES = ("datasets", "rewrites", "checkpoints", "evals", "leases")
PATH_LIKE = re.compile(r"(^|[/{}'\"])(%s)/" % "|".join(PREFIXES))


def sources(*folders: str):
    for folder in folders:
        for path in sorted((REPO / folder).rglob("*.py")):
            yield path, ast.parse(path.read_text(), str(path))


def docstrings(tree) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                ids.add(id(first.value))
    return ids


def path_spellings(tree) -> list[tuple[int, str]]:
    """String constants that spell a root prefix as a path: `checkpoints/...`, `{x}/evals/` (prose with
    spaces, such as help text, is not a path), or a bare prefix handed to a join."""
    skip = docstrings(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip:
            text = node.value
            if PATH_LIKE.search(text) and not re.search(r"\s", text):
                found.append((node.lineno, text))
        if isinstance(node, ast.Call):
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if name == "join":
                found += [(a.lineno, a.value) for a in node.args
                          if isinstance(a, ast.Constant) and a.value in PREFIXES]
    return found


def test_root_prefixes_are_spelled_in_the_layout_module_only():
    offenders = [f"{path.relative_to(REPO)}:{line}: {text!r}" for path, tree in sources(*PACKAGES)
                 if path != REPO / "laclip" / "layout.py" for line, text in path_spellings(tree)]
    assert not offenders, "\n".join(offenders)


def test_the_check_finds_a_spelled_prefix():
    """The scan above can fail: each way of spelling a layout path is caught."""
    for code in ('x = f"{root}/checkpoints/{run}"', 'p = "rewrites/" + d', 'p = join("evals", run)',
                 'p = f"datasets/{name}"'):
        assert path_spellings(ast.parse(code)), code
    assert not path_spellings(ast.parse('help = "rewrite id under rewrites/<dataset>/ (none: CLIP)"'))


def test_the_container_library_imports_neither_cli_nor_renderers():
    offenders = []
    for path, tree in sources("laclip"):
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            offenders += [f"{path.relative_to(REPO)}:{node.lineno}: {n}" for n in names
                          if n.split(".")[0] in ("laclip_cli", "laclip_jobs")]
    assert not offenders, "\n".join(offenders)


def test_renderers_never_talk_to_a_cluster():
    talking = {"connect", "create", "load_kube_config", "load_incluster_config", "ApiClient"}
    offenders = []
    for path, tree in sources("jobs"):
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
                if name in talking or name.startswith(("create_namespaced", "delete_namespaced", "read_namespaced")):
                    offenders.append(f"{path.relative_to(REPO)}:{node.lineno}: {name}")
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                module = node.module if isinstance(node, ast.ImportFrom) else node.names[0].name
                if (module or "").split(".")[0] == "kubernetes" and "ApiClient" not in {a.name for a in node.names}:
                    offenders.append(f"{path.relative_to(REPO)}:{node.lineno}: imports {module}")
                names = {f"{module}.{a.name}" for a in node.names} if isinstance(node, ast.ImportFrom) else set()
                if module in ("laclip.cluster", "laclip_cli") or module.startswith("laclip_cli.") or \
                        "laclip.cluster" in names:  # the API client, and the layer above
                    offenders.append(f"{path.relative_to(REPO)}:{node.lineno}: imports {module}")
    assert not offenders, "\n".join(offenders)


def test_exit_codes_are_defined_once():
    """One EXIT_PERMANENT, in laclip.errors: every entrypoint and renderer uses that one."""
    defined = []
    for path, tree in sources(*PACKAGES):
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and \
                    isinstance(node.value.value, int) and not isinstance(node.value.value, bool):
                for target in node.targets:
                    if isinstance(target, ast.Name) and target.id.startswith("EXIT"):
                        defined.append(f"{path.relative_to(REPO)}:{target.id}")
    assert sorted(defined) == ["laclip/errors.py:EXIT_FAILED", "laclip/errors.py:EXIT_PERMANENT",
                               "laclip/errors.py:EXIT_USAGE"]


@pytest.mark.parametrize("module", ["laclip.rewrite.main", "laclip.train.main", "laclip.eval.main"])
def test_every_entrypoint_reads_its_config_one_way(module, tmp_path):
    """`--config JSON`, `--config-file FILE`, `--set F=V`; a bad value exits EXIT_PERMANENT with one line."""
    import subprocess
    import sys

    from laclip.errors import EXIT_PERMANENT

    bad = tmp_path / "cfg.yaml"
    bad.write_text("dataset: demo\nrun: r1\ncheckpoint: /nowhere/checkpoints/r1/step_1\nno_such_field: 1\n")
    for args in (["--config", "{not json"], ["--config-file", str(bad)], ["--config", "{}", "--set", "x"]):
        proc = subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, timeout=120,
                              cwd=tmp_path)
        assert proc.returncode == EXIT_PERMANENT, (args, proc.stderr)
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr

STYLES = "bold|dim|italic|underline|reverse|red|green|yellow|blue|magenta|cyan|white|b|i|u"
MARKUP = re.compile(rf"\[(/({STYLES})?|({STYLES})( [^\]]*)?)\]")


def markup_spellings(tree) -> list[tuple[int, str]]:
    """String constants (f-string parts included) that hold rich markup tags: every console here reads no
    markup, so a tag is printed as text; style comes from `styled` only."""
    skip = docstrings(tree)
    return [(node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip
            and MARKUP.search(node.value)]


def test_no_rich_markup_is_spelled_in_messages():
    offenders = [f"{path.relative_to(REPO)}:{line}: {text!r}" for path, tree in sources(*PACKAGES)
                 for line, text in markup_spellings(tree)]
    assert not offenders, "\n".join(offenders)


def test_the_check_finds_spelled_markup():
    for code in ('err.print(f"[yellow]warning:[/] {w}")', 'out.print("[bold]done[/bold]")', 'x = "[red on white]x"'):
        assert markup_spellings(ast.parse(code)), code
    for code in ('x = "gs://b/p"', 'x = "a[0]"', 'x = "{00000..NNNNN}.tar"', 'x = "[x]"', 'x = "()[]{}"'):
        assert not markup_spellings(ast.parse(code)), code


def test_one_module_talks_to_the_api_server():
    """laclip.cluster is the one module that imports the kubernetes client (credentials resolved in one
    place, every API error said one way); the CLI and a training pod go through it."""
    offenders = []
    for path, tree in sources("laclip", "jobs", "cli"):
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
                if any(n.split(".")[0] == "kubernetes" for n in names) and path != REPO / "laclip" / "cluster.py":
                    offenders.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert not offenders, "\n".join(offenders)
