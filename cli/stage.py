"""The stage as the unit of the CLI: each stage declares a `Stage`, and one driver gives all of them
the same `laclip submit <stage>`: curated flags whose defaults, help and validation come from
the stage's config model, `--config-file` and `--set FIELD=VALUE` for every field, `--dry-run`,
`--local` and a cluster submit through laclip.cluster.

    values = --config-file, then the curated flags, then --set (later wins)
    cfg = stage.build(stage, values, sets, ctx)  # presets, derived defaults, validation: one config
    --local:   stage.run_local(cfg, ctx)    # the pods' entrypoint as local processes
    else:      stage.check(cfg, ctx)        # permanent problems (a typo'd --rewrites) end here
               objects = stage.render(cfg)  # pure: laclip_jobs
               --dry-run: YAML; else laclip.cluster.create(objects)
"""

from __future__ import annotations

import inspect
import sys
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import typer
from rich.markup import escape

from laclip.errors import UsageError
from laclip_cli.console import err, out, require_bucket, show_estimate
from laclip_cli.state import state


@dataclass(frozen=True)
class Flag:
    """A curated flag for one config field (dotted path, e.g. `cluster.queue`)."""

    field: str
    names: tuple[str, ...]
    help: str | None = None  # default: the field's description
    parse: Callable[[Any], Any] | None = None  # the typed value -> the field's value (e.g. a comma list)
    kind: type | None = None  # the flag's type when it differs from the field's (say, a comma list)


def comma_list(text: str) -> list[str]:
    """`a, b,c` -> ["a", "b", "c"]: a flag that takes a list as one comma-separated value."""
    return [item.strip() for item in text.split(",") if item.strip()]


def lazy(target: str) -> Callable:
    """`module:function`, imported when called: a stage's renderer stays out of `laclip --help`."""
    def call(*args, **kwargs):
        import importlib

        module, _, name = target.partition(":")
        return getattr(importlib.import_module(module), name)(*args, **kwargs)

    return call


def fields(*paths: str, **help_text: str) -> list[Flag]:
    """Flags that are only their field: `--max-restarts` for max_restarts, `--queue` for cluster.queue
    (the last part of the path), help, default and type from the field; in the order given. A stage's
    own help for one goes by that last part."""
    return [Flag(p, (f"--{p.rsplit('.', 1)[-1].replace('_', '-')}",), help_text.get(p.rsplit(".", 1)[-1]))
            for p in paths]


def cluster_flags(*names: str, **help_text: str) -> list[Flag]:
    """Flags of ClusterOptions fields (`--queue` for cluster.queue...)."""
    return fields(*(f"cluster.{n}" for n in names), **help_text)


@dataclass(frozen=True)
class Option:
    """A driver option that is no config field (how a --local run executes, --wait...)."""

    name: str
    names: tuple[str, ...]
    kind: type
    default: Any
    help: str


@dataclass
class Context:
    root: str
    local: bool
    dry_run: bool
    kube_context: str | None
    options: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Stage:
    name: str
    help: str
    config: type
    flags: list[Flag]
    build: Callable[["Stage", dict, list[str], Context], Any]  # (stage, values, --set, ctx) -> config
    render: Callable[[Any], list[dict]]
    run_local: Callable[[Any, Context], None]
    check: Callable[[Any, Context], None] = lambda cfg, ctx: None
    estimate: Callable[[Any], Any] = lambda cfg: None
    submitted: Callable[[Any, list[dict], list, Context], None] = lambda cfg, objects, outcomes, ctx: None
    options: list[Option] = field(default_factory=list)
    bucket_paths: Callable[[Any], list[str]] = lambda cfg: [cfg.root]
    local_default: bool = False  # runs here unless --cluster (a CPU stage such as rewrite import)
    component: str = ""  # the app.kubernetes.io/component label of its objects [default: the name]
    submit: bool = True  # a command of `laclip submit` (rewrite import is `laclip rewrites import`)

    @property
    def label(self) -> str:
        return self.component or self.name

    def flag_names(self) -> dict[str, str]:
        """field path -> the flag a user types, for error messages."""
        return {f.field: f.names[0] for f in self.flags}


def _field(model, path: str):
    cls, info = model, None
    for part in path.split("."):
        info = cls.model_fields[part]
        cls = next((a for a in (info.annotation, *typing.get_args(info.annotation))
                    if isinstance(a, type) and hasattr(a, "model_fields")), None)
    return info


def _flag_type(annotation) -> type:
    args = [a for a in typing.get_args(annotation) if a is not type(None)] if \
        typing.get_origin(annotation) in (typing.Union, types.UnionType) else [annotation]
    base = args[0] if len(args) == 1 else str
    if typing.get_origin(base) is typing.Literal:
        return str
    return base if base in (bool, int, float) else str


def _help(stage: Stage, flag: Flag) -> str:
    """The field's description (or the flag's own help) and its default, as rich text."""
    info = _field(stage.config, flag.field)
    text = flag.help or info.description or ""
    if "[default" not in text and not info.is_required() and info.default is not None \
            and info.default_factory is None and not isinstance(info.default, bool):
        text += f"  [default: {info.default}]"
    return escape(text)


def _param(name: str, kind, default, names, help_text) -> inspect.Parameter:
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=kind,
                             default=typer.Option(default, *names, help=help_text, show_default=False))


def command(stage: Stage) -> Callable:
    """The typer command `laclip submit <stage>`, its signature built from the stage's flags."""
    params, fields = [], {}
    for flag in stage.flags:
        kind = flag.kind or _flag_type(_field(stage.config, flag.field).annotation)
        names = flag.names
        if kind is bool and "/" not in names[0]:
            names = (f"{names[0]}/--no-{names[0][2:]}", *names[1:])
        pname = names[0].split("/")[0].lstrip("-").replace("-", "_")
        fields[pname] = flag
        params.append(_param(pname, Optional[kind], None, names, _help(stage, flag)))
    common = [
        Option("config_file", ("--config-file",), Optional[str], None, "A file (JSON or YAML) of config fields."),
        Option("sets", ("--set",), list[str], [], "FIELD=VALUE for any config field, e.g. cluster.queue=a100; "
                                                   "repeatable, applied last."),
        Option("dry_run", ("--dry-run",), bool, False, "Print what would be created as YAML; contact nothing."),
        Option("local", ("--local/--cluster",), Optional[bool], None,
               "Run the pod's entrypoint here (the default), or --cluster: submit it as a Job.")
        if stage.local_default else
        Option("local", ("--local",), bool, False, "Run the pods' entrypoint here, against a local folder."),
        Option("kube_context", ("--context",), Optional[str], None, "kubeconfig context [default: the current one]."),
    ]
    for opt in stage.options + common:
        params.append(_param(opt.name, opt.kind, opt.default, opt.names, escape(opt.help)))

    def run(**kw):
        flag_values = {name: kw.pop(name) for name in fields}
        drive(stage, flag_values, fields, **kw)

    run.__signature__ = inspect.Signature(params)
    run.__doc__ = stage.help
    run.__name__ = stage.name
    return run


def _nest(values: dict[str, Any]) -> dict:
    out: dict = {}
    for path, value in values.items():
        target = out
        *parents, last = path.split(".")
        for p in parents:
            target = target.setdefault(p, {})
        target[last] = value
    return out


def drive(stage: Stage, flag_values: dict, fields: dict[str, Flag], *, config_file, sets, dry_run, local,
          kube_context, **options) -> None:
    from laclip.config import merge, read_config_file
    from laclip.storage import resolve_root

    if local is None:  # a stage that runs here by default (--local/--cluster): --dry-run prints its Job
        local = stage.local_default and not dry_run
    if dry_run and local:
        raise UsageError("--dry-run and --local exclude each other")
    given = {}
    for pname, value in flag_values.items():
        if value is not None and value != [] and value != ():
            flag = fields[pname]
            given[flag.field] = flag.parse(value) if flag.parse else value
    values = merge(read_config_file(config_file) if config_file else {}, _nest(given))
    ctx = Context(resolve_root(state.root), local, dry_run, kube_context, options)
    cfg = stage.build(stage, values, list(sets), ctx)
    if local:
        stage.run_local(cfg, ctx)
        return
    for path in dict.fromkeys(stage.bucket_paths(cfg)):
        require_bucket(path, dry_run)
    if not dry_run:
        stage.check(cfg, ctx)
    objects = stage.render(cfg)
    show_estimate(stage.estimate(cfg), dry_run)
    if dry_run:
        from laclip_jobs.common import dump_yaml

        sys.stdout.write(dump_yaml(objects))
        return
    from laclip import cluster
    from laclip_jobs.backends import RESOURCES
    from laclip_jobs.common import check_images_configured

    check_images_configured(objects)
    outcomes = cluster.create(objects, RESOURCES, context=kube_context)
    for kind, name, outcome in outcomes:
        ns = next(o["metadata"]["namespace"] for o in objects if o["metadata"]["name"] == name)
        if outcome == "created":
            out.print(f"created {kind} {ns}/{name}", soft_wrap=True, markup=False)
        else:
            why = "the same request" if outcome == "same" else "this account may not read it to compare"
            err.print(f"{kind} {ns}/{name} already exists ({why}): not created again", soft_wrap=True, markup=False)
    stage.submitted(cfg, objects, outcomes, ctx)
