"""Hostile-input classes 6 and 7: user text printed through rich, and user text inside what laclip renders.

Class 6: store roots that read as rich markup or emoji codes are printed as typed, by every command that
prints them, and no command fails on them (after writing its data or before).
Class 7: hostile strings in every user-settable text field of the stage configs (rewrite, train as a
JobSet, with flex-start and as a Volcano Job, eval, get-eval, rewrites import) (through
`--set FIELD=VALUE`, as `laclip submit STAGE --dry-run` renders them) either are refused with one line or
reach the container as typed: after the kubelet's `$(VAR)`/`$$` expansion and the shell's parsing of
TorchX's `bash -c` line, the rendered objects have the same fields, arguments, environment variables,
volumes and mount options as with a plain value in the same field. And the eval workflow's inputs
cannot add lines to $GITHUB_OUTPUT or print workflow commands.
"""

from __future__ import annotations

import functools
import json
import os
import random
import re
import shutil
import subprocess
import typing
from pathlib import Path

import yaml

from .harness import Case, Result, assert_ok, good_shard, laclip, write_dataset

# -- class 6: markup ------------------------------------------------------------------------------
MARKUP_ROOTS = ["exp[v2]", "a[/]b", "[bold]x[/bold]", "run:smile:", "[link=https://evil.example]here[/link]",
                "q[red]w", "back\\[slash]", "[/]"]
WIDE = {"COLUMNS": "400"}


def flat(text: str) -> str:
    """Output without white space and table borders: a long path may wrap in a table cell."""
    return re.sub(r"[\s│┃┆┊║|─━┏┓┗┛┡┩└┘┌┐╇┳┻╋├┤┼┬┴]", "", text)


def shows(res: Result, literal: str) -> None:
    text = res.out + res.err
    assert "Traceback" not in text and res.exc is None, (res.exc, text[-800:])
    assert flat(literal) in flat(text), f"{literal!r} is not shown as typed in:\n{text[-1200:]}"


def _markup_case(root_name: str, command: str) -> Case:
    def run(tmp: Path) -> None:
        root = tmp / root_name
        root.mkdir(parents=True)
        literal = str(root.resolve())
        r = str(root)
        if command == "version":
            res = laclip("--root", r, "version", env=WIDE)
            assert_ok(res)
        elif command == "datasets-list":
            write_dataset(root, "mine", [good_shard("0000")])
            res = laclip("--root", r, "datasets", "list", env=WIDE)
            assert_ok(res)
        elif command == "data-synth":
            res = laclip("--root", r, "data", "synth", "--shards", "1", "--per-shard", "2", env=WIDE)
            assert_ok(res)
        elif command == "datasets-show":
            write_dataset(root, "mine", [good_shard("0000")])
            res = laclip("--root", r, "datasets", "show", "mine", "--check", env=WIDE)
            assert_ok(res)
        elif command == "dry-run-note":
            res = laclip("--root", r, "submit", "rewrite", "--dataset", "cc12m", "--dry-run", "--num-shards", "1",
                         env=WIDE)
            assert_ok(res)
        elif command == "rewrite-local":
            write_dataset(root, "mine", [good_shard("0000")])
            res = laclip("--root", r, "submit", "rewrite", "--dataset", "mine", "--engine", "null", "--local",
                         "--workers", "1", env=WIDE)
            assert_ok(res)
        elif command == "error-message":  # a LaclipError naming the root
            res = laclip("--root", r, "datasets", "show", "cc12m", env=WIDE)
            assert res.rc not in (0, None)
        else:  # eval report: the error names the evals folder under the root
            res = laclip("--root", r, "eval", "report", "nosuch", "--no-png", env=WIDE)
            assert res.rc not in (0, None)
        shows(res, literal)
    return Case(6, f"{command}-{re.sub(r'[^a-z0-9]+', '-', root_name.lower()).strip('-') or 'slash'}", run,
                slow=command == "rewrite-local")  # --local runs the worker as a child process


CLASS6 = ([_markup_case(r, c) for r in MARKUP_ROOTS
           for c in ("version", "datasets-list", "datasets-show", "dry-run-note", "error-message", "eval-report")]
          + [_markup_case(r, "data-synth") for r in ("exp[v2]", "a[/]b", "[/]")]
          + [_markup_case(r, "rewrite-local") for r in ("exp[v2]", "[/]")])


# -- class 7: rendered objects --------------------------------------------------------------------
ROOT = "gs://laclip-bucket/prod"
TRAIN = ["--dataset", "cc12m", "--rewrites", "base", "--model", "ViT-B-16"]
# Each renderer a user reaches, by the command that renders it and the flags a plain submit gives.
BASE = {
    "rewrite": ["submit", "rewrite", "--dataset", "cc12m", "--num-shards", "4"],
    "train": ["submit", "train", *TRAIN, "--nodes", "2"],  # a JobSet (the default scheduler)
    "train-flex": ["submit", "train", *TRAIN, "--nodes", "2", "--flex-start", "--topology", "required"],
    "train-volcano": ["submit", "train", *TRAIN, "--nodes", "2:8", "--scheduler", "volcano"],
    "eval": ["submit", "eval", "--checkpoint", "gs://bucket/checkpoints/run/step_1000"],
    "get-eval": ["submit", "get-eval", "--datasets", "vtab-cifar10,food101"],
    "import": ["rewrites", "import", "--dataset", "cc12m", "--original", "gs://b/cc12m.csv",
               "--source", "chatgpt=gs://b/chatgpt.txt"],
}
# Where a field's value sits in what a user would type (a gs:// model is mounted; others pass through).
TEMPLATES = {"model": ["{}", "gs://models-bucket/{}"], "root": ["gs://laclip-bucket/{}"],
             "checkpoint": ["gs://bucket/checkpoints/{}/step_1000", "gs://bucket/checkpoints/run/{}"],
             "cluster.image": ["r.example/{}:1"], "endpoint": ["http://vllm:8000/{}"], "model_origin": ["gs://b/{}"]}
COMPANIONS = {("rewrite", "endpoint"): ["--engine", "openai", "--model", "m"],
              ("rewrite", "model"): ["--engine", "hf"]}
TEMPLATES.update({"original": ["gs://b/{}.csv", "{}"], "work_dir": ["/tmp/{}"], "scratch": ["/scratch/{}"]})
FRAGMENTS = ["$(HOME)", "$$", "${HOME}", "$(LACLIP_ROOT)", "'", '"', "`touch pwned`", "; touch pwned", "\n",
             "\r\n", "\t", " ", ",uid=0", ",only-dir=", "=", "--help", " --set x=1", "\\", "&&", "|", ">out",
             "%s", "{0}", "{c}", "é", "\u202e", "#", "*", "~", "..", "/", ":", "@", "\x00", "\x1b[31m"]
MARK_L, MARK_R = "zq", "qz"


def text_fields(model, prefix: str = "") -> list[str]:
    """Every field of a config (nested models included) that takes text."""
    from pydantic import BaseModel

    from laclip.config import _takes_text

    found = []
    for name, info in model.model_fields.items():
        inner = next((a for a in (info.annotation, *typing.get_args(info.annotation))
                      if isinstance(a, type) and issubclass(a, BaseModel)), None)
        if inner is not None:
            found += text_fields(inner, f"{prefix}{name}.")
        elif _takes_text(info.annotation) or _is_text_list(info.annotation):
            found.append(prefix + name)
    return found


def _is_text_list(annotation) -> bool:
    """list[str], dict[str, str], or either of them or None."""
    options = [a for a in typing.get_args(annotation) if a is not type(None)] \
        if typing.get_origin(annotation) in (typing.Union, getattr(__import__("types"), "UnionType", None)) \
        else [annotation]
    return any(typing.get_origin(a) in (list, dict) and set(typing.get_args(a)) == {str} for a in options)


def stage_fields() -> list[tuple[str, str]]:
    from laclip.eval.config import EvalConfig
    from laclip.fetch.config import FetchConfig
    from laclip.rewrite.config import RewriteConfig
    from laclip.rewrite_import.config import ImportConfig
    from laclip.train.config import TrainConfig

    skip = {"owner", "model_origin", "preset", "run", "suites"}  # set by the CLI or the renderer, or checked names
    models = {"rewrite": RewriteConfig, "train": TrainConfig, "train-flex": TrainConfig, "train-volcano": TrainConfig,
              "eval": EvalConfig, "get-eval": FetchConfig, "import": ImportConfig}
    only = {"train-flex": ("topology_level", "cluster.queue", "root", "rewrites"),  # what differs from train
            "train-volcano": ("root", "rewrites", "dataset", "cluster.queue", "model")}
    return [(stage, f) for stage, model in models.items() for f in text_fields(model)
            if f not in skip and (stage not in only or f in only[stage])]


def kubelet_expand(text: str, env: dict[str, str]) -> str:
    """The kubelet on command, args and env values: `$(NAME)` -> env NAME when defined, `$$` -> `$`."""
    out, i = [], 0
    while i < len(text):
        if text[i] == "$" and i + 1 < len(text):
            if text[i + 1] == "$":
                out.append("$")
                i += 2
                continue
            end = text.find(")", i + 2) if text[i + 1] == "(" else -1
            if end != -1:
                out.append(env.get(text[i + 2:end], text[i:end + 1]))
                i = end + 1
                continue
        out.append(text[i])
        i += 1
    return "".join(out)


def shell_calls(script: str, tmp: Path) -> tuple[list[list[str]], list[list[str]]]:
    """Run a `bash -c` script with every command it names replaced by a recorder and PATH empty: (the
    calls it meant to make, any other command it tried)."""
    names = set(re.findall(r"(?:^|[;&|]\s*)([A-Za-z_][\w.-]*)", script)) | {"torchrun", "python", "python3"}
    stubs = "".join(f'{n}() {{ printf "%s\\0" "$@" >> "$REC"; printf "\\n" >> "$REC"; }}; '
                    for n in sorted(names) if re.fullmatch(r"[A-Za-z_]\w*", n))
    stubs += ('command_not_found_handle() { printf "%s\\0" "$@" >> "$REC.bad"; printf "\\n" >> "$REC.bad"; '
              "return 127; }; ")
    rec = tmp / "argv"
    for f in (rec, tmp / "argv.bad"):
        f.unlink(missing_ok=True)
    subprocess.run([shutil.which("bash") or "/bin/bash", "-c", stubs + script], cwd=tmp, timeout=30, check=False,
                   capture_output=True, env={"REC": str(rec), "PATH": "/nonexistent", "HOME": str(tmp)})

    def calls(path: Path) -> list[list[str]]:
        return [c.split("\0")[:-1] for c in path.read_bytes().decode().split("\n")[:-1]] if path.exists() else []

    return calls(rec), calls(tmp / "argv.bad")


def pod_specs(obj: dict) -> list[dict]:
    if obj["apiVersion"].startswith("batch.volcano.sh"):
        return [t["template"]["spec"] for t in obj["spec"]["tasks"]]
    if obj["kind"] == "JobSet":
        return [r["template"]["spec"]["template"]["spec"] for r in obj["spec"]["replicatedJobs"]]
    if "template" not in obj.get("spec", {}):  # a ConfigMap, a Service: no pods
        return []
    return [obj["spec"]["template"]["spec"]]


def processes(objs: list[dict], tmp: Path) -> list[tuple[list[str], dict[str, str], list[list[str]]]]:
    """What each container's process receives: (argv after the kubelet, env after the kubelet, the calls
    a `bash -c` argv makes after the shell's parsing)."""
    found = []
    for obj in objs:
        for spec in pod_specs(obj):
            for c in spec["containers"] + spec.get("initContainers", []):
                env: dict[str, str] = {}
                for e in c.get("env", []):
                    if "value" in e:
                        env[e["name"]] = kubelet_expand(e["value"], env)
                argv = [kubelet_expand(a, env) for a in c.get("command", []) + c.get("args", [])]
                calls: list[list[str]] = []
                if argv[:2] in (["bash", "-c"], ["sh", "-c"], ["/bin/sh", "-c"]):
                    calls, unexpected = shell_calls(argv[2], tmp)
                    assert not unexpected, f"the user's text ran a command: {unexpected}"
                    assert calls, f"the script ran no command: {argv[2]!r}"
                found.append((argv, env, calls))
    return found


def shape(value, key: str = ""):
    """Everything about a rendered value but its text: dict keys, list lengths, the options of a mount,
    and of a JSON config in a string its own shape."""
    if isinstance(value, dict):  # a key the user typed (a dataset name in a config's dict) is its text
        return {("<typed>" if MARK_L in k else k): shape(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [shape(v, key) for v in value]
    if isinstance(value, str):
        if key == "mountOptions":
            return ("mount", tuple(opt.split("=", 1)[0] for opt in value.split(",")))
        if value.startswith("{"):
            try:
                return ("json", shape(json.loads(value.replace("$$", "$"))))
            except ValueError:
                pass
        return "str"
    return type(value).__name__


def json_strings(value) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in json_strings(k) + json_strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in json_strings(v)]
    return []


@functools.lru_cache(maxsize=512)  # the plain value's render, shared by the cases of a field
def render(stage: str, field: str, value: str) -> Result:
    raw = json.dumps([value]) if _list_field(stage, field) else value
    if _dict_field(stage, field):
        raw = json.dumps({"chatgpt" if stage == "import" else "cub": value})
    args = BASE[stage] + COMPANIONS.get((stage, field), [])
    return laclip("--root", ROOT, *args, "--set", f"{field}={raw}", "--dry-run")


def _list_field(stage: str, field: str) -> bool:
    return field in ("sources", "datasets", "eval_datasets", "splits") and not _dict_field(stage, field)


def _dict_field(stage: str, field: str) -> bool:
    return (stage, field) in (("import", "sources"), ("get-eval", "repos"))


def objects(res: Result) -> list[dict]:
    return [d for d in yaml.safe_load_all(res.out[res.out.index("apiVersion"):]) if d]


def check_field(stage: str, field: str, template: str, text: str, tmp: Path) -> None:
    """The hostile value is refused in one line, or it renders exactly as a plain value does, and reaches
    the container whole."""
    base = render(stage, field, template.format(MARK_L + "ok" + MARK_R))
    if base.rc != 0:  # a field of choices or formats: compare with its default instead
        base = laclip("--root", ROOT, *BASE[stage], *COMPANIONS.get((stage, field), []), "--dry-run")
    assert_ok(base)
    drawn = MARK_L + text + MARK_R
    res = render(stage, field, template.format(drawn))
    if res.rc != 0:
        assert res.exc is None and res.rc not in (None, 70), f"{field}={drawn!r}: {res.exc!r} {res.err[-400:]}"
        lines = res.messages
        assert len(lines) == 1 and lines[0].startswith("error: "), f"{field}={drawn!r} refused unclearly: {lines}"
        return
    a, b = objects(base), objects(res)
    assert shape(a) == shape(b), f"{field}={drawn!r} changed the rendered objects' fields"
    pa, pb = processes(a, tmp), processes(b, tmp)
    for (argv_a, env_a, calls_a), (argv_b, env_b, calls_b) in zip(pa, pb):
        assert len(argv_a) == len(argv_b), f"{field}={drawn!r} added or dropped an argument: {argv_b}"
        assert sorted(env_a) == sorted(env_b), f"{field}={drawn!r} changed the environment variables"
        assert [len(c) for c in calls_a] == [len(c) for c in calls_b], f"{field}={drawn!r} changed {calls_b}"
    typed = [s for argv, env, calls in pb for element in argv + list(env.values()) + [x for c in calls for x in c]
             for s in _strings(element)]
    if field not in ("cluster.namespace", "cluster.service_account", "cluster.priority_class", "cluster.queue",
                     "cluster.image", "cluster.accelerator", "cluster.cpu", "cluster.memory", "cluster.shm",
                     "topology_level", "token_secret", "scratch_size",
                     "scratch", "work_dir"):  # local folders: the pod gets its own (jobs/fetch, jobs/rewrite_import)
        assert any(drawn in s for s in typed), f"{field}={drawn!r} did not reach the container as typed"


def _strings(element: str) -> list[str]:
    if element.startswith("{"):
        try:
            return json_strings(json.loads(element))
        except ValueError:
            pass
    return [element]


def hostile_strings(seed: int, n: int) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choice(FRAGMENTS) for _ in range(rng.randint(1, 4))) for _ in range(n)]


def _class7(stage: str, field: str, template: str, text: str, i: int) -> Case:
    return Case(7, f"{stage}-{field}-{i}", lambda tmp: check_field(stage, field, template, text, tmp))


def class7_cases(per_field: int = 1, seed: int = 11) -> list[Case]:
    cases = []
    for n, (stage, field) in enumerate(stage_fields()):
        for template in TEMPLATES.get(field.split(".")[-1] if field != "cluster.image" else field, ["{}"]):
            for i, text in enumerate(hostile_strings(seed + n, per_field)):
                cases.append(_class7(stage, field, template, text, len(cases)))
    return cases


# -- class 7: the eval workflow's inputs ----------------------------------------------------------
WORKFLOW = Path(__file__).resolve().parents[2] / ".github" / "workflows" / "eval.yml"


def resolve_step() -> str:
    import laclip

    wf = Path(laclip.__file__).resolve().parents[1] / ".github" / "workflows" / "eval.yml"
    steps = yaml.safe_load((wf if wf.exists() else WORKFLOW).read_text())["jobs"]["eval"]["steps"]
    return next(s["run"] for s in steps if s.get("id") == "ckpt")


WORKFLOW_INPUTS = [
    "gs://b/checkpoints/r/step_1\nroot=gs://evil/x", "gs://b/checkpoints/r/step_1\r\nrun=owned",
    "gs://b/checkpoints/r/step_1\n::add-mask::secret", "gs://b/checkpoints/r/step_1\n::stop-commands::x",
    "gs://b/checkpoints/r/step_1\nEOF\nchecked=1", "gs://b/checkpoints/$(touch pwned)/step_1",
    "gs://b/checkpoints/r/`touch pwned`", "gs://b/checkpoints/r/step_1' ; touch pwned ; '",
    "gs://b/checkpoints/r/step_1 --x", "gs://b/checkpoints/r\t/step_1", "gs://b/checkpoints/r/step_1\x1b[31m",
    "gs://b/checkpoints/r/step_1\x00x",
]


def check_workflow(value: str, tmp: Path) -> None:
    out_file = tmp / "github_output"
    out_file.write_text("")
    value = value.replace("\x00", "")  # no environment variable can hold one
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "INPUT_CHECKPOINT": value,
           "TAG": "", "LACLIP_ROOT": "", "GITHUB_OUTPUT": str(out_file), "HOME": str(tmp)}
    proc = subprocess.run(["bash", "-e", "-c", resolve_step()], capture_output=True, text=True, env=env, cwd=tmp,
                          timeout=30)
    lines = out_file.read_text().splitlines()
    assert not list(tmp.glob("pwned*")), "the input ran a command"
    commands = [ln for ln in proc.stdout.splitlines() if ln.startswith("::")]
    assert all(ln.startswith("::error::") for ln in commands) and len(commands) <= 1, proc.stdout
    if proc.returncode != 0:
        assert lines == [], f"refused, yet wrote {lines}"
        return
    keys = [ln.split("=", 1)[0] for ln in lines]
    assert keys == ["checkpoint", "root", "run"], f"the input added output lines: {lines}"
    assert lines[0] == f"checkpoint={value}", lines


CLASS7_WORKFLOW = [Case(7, f"workflow-input-{i}", lambda tmp, v=v: check_workflow(v, tmp))
                   for i, v in enumerate(WORKFLOW_INPUTS)]


def _local_command_line(text: str):
    """`submit train --local` runs the AppDef's own `bash -c` line here: the same check on it."""
    def run(tmp: Path) -> None:
        from laclip.train.config import TrainConfig
        from laclip_jobs.train import app_def
        from torchx.specs import macros

        drawn = MARK_L + text + MARK_R
        cfg = TrainConfig(preset="demo", run="local-run", root=str(tmp / "r$oot"), rewrites=drawn)
        role = app_def(cfg, local=True, image=str(tmp)).roles[0]
        role = macros.Values(img_root=str(tmp), app_id="x", replica_id="0", rank0_env="MASTER_ADDR",
                             base_img_root="").apply(role)
        argv = [role.entrypoint, *role.args]
        assert argv[:2] == ["bash", "-c"], argv
        calls, unexpected = shell_calls(argv[2], tmp)
        assert not unexpected and calls, (unexpected, argv[2])
        launcher = next(c for c in calls if "--config" in c)
        config = json.loads(launcher[launcher.index("--config") + 1])
        assert config["rewrites"] == drawn and config["root"] == str(tmp / "r$oot"), config
        assert role.env["LACLIP_ROOT"] == str(tmp / "r$oot"), role.env
    return run


CLASS7_LOCAL = [Case(7, f"local-train-command-line-{i}", _local_command_line(t))
                for i, t in enumerate(hostile_strings(71, 6) + ["$(HOME)$$", "'; touch pwned; '"])]

CASES = CLASS6 + class7_cases() + CLASS7_WORKFLOW + CLASS7_LOCAL
