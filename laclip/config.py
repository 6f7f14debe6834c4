"""What every stage config shares: where pods run (ClusterOptions), and how a config is read.

A stage config is one pydantic model. The CLI, the renderers and the container entrypoints all
build it the same way, `load_config(Model, base, file=..., sets=[...])`:

    base values (a preset, the CLI's flags)  <  --config-file FILE (JSON or YAML)  <  --set FIELD=VALUE

and every validation error reads as one line through `explain`. This module must stay importable
without torch.
"""

from __future__ import annotations

import json
import os
import re
import types
import typing
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from laclip.errors import UsageError

Accelerator = Literal["nvidia-tesla-a100", "nvidia-a100-80gb", "nvidia-h100-80gb", "nvidia-h100-mega-80gb"]


# -- reading a config ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Origin:
    """Where a config's values came from, so that an error names what the user typed: the flags typed
    (field path -> flag), the config file and the field paths it sets, the --set assignments."""

    flags: dict[str, str] = field(default_factory=dict)
    file: str | None = None
    file_paths: frozenset[str] = frozenset()
    set_paths: tuple[str, ...] = ()

    def name(self, path: str, value=None) -> str:
        """How the user gave `value` at `path` (a dotted field path): `--set FIELD VALUE`, `--flag VALUE` or
        `config file FILE: FIELD VALUE` (the value left out when None)."""
        def within(paths) -> bool:
            return any(path == p or path.startswith(p + ".") for p in paths)

        shown = "" if value is None else f" {json.dumps(value) if isinstance(value, bool) else repr(value)}"
        if within(self.set_paths):
            return f"--set {path}{shown}"
        if path in self.flags:
            return f"{self.flags[path]}{shown}"
        if self.file and within(self.file_paths):
            return f"config file {self.file}: {path}{shown}"
        return f"--set {path}{shown}" if path else f"config{shown}"


def field_paths(data: dict, prefix: str = "") -> frozenset[str]:
    """The dotted paths of a nested mapping's leaves and branches (what a config file sets)."""
    found = set()
    for key, value in data.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        found.add(path)
        if isinstance(value, dict):
            found |= field_paths(value, path)
    return frozenset(found)


def explain(exc: ValidationError, flags: dict[str, str] | None = None, file: str | None = None,
            set_paths: tuple[str, ...] = (), origin: Origin | None = None) -> str:
    """A pydantic error as one line: `invalid <what the user typed> 'given': why` for the first problem
    (`--set FIELD` when the value came from one, the flag the user typed, `config file FILE: FIELD` when
    the config file set it), and how many more there are."""
    errors = exc.errors()
    first = errors[0]
    path = ".".join(str(p) for p in first["loc"] if not isinstance(p, int))
    if origin is None:  # callers that know only the flags' names: those are what the user typed
        origin = Origin(dict(flags or {}), file, frozenset({path}) if file and path not in (flags or {}) else
                        frozenset(), set_paths)
    msg = " ".join(first["msg"].removeprefix("Value error, ").split())
    given = first.get("input")
    shown = isinstance(given, (str, int, float)) and not isinstance(given, bool) and repr(given) not in msg \
        and len(repr(given)) < 200
    more = f" (and {len(errors) - 1} more problem{'s' * (len(errors) > 2)})" if len(errors) > 1 else ""
    if not path:  # a check across fields: its message names the flags itself
        return f"{msg}{more}"
    return f"invalid {origin.name(path, given if shown else None)}: {msg}{more}"


def read_config_file(path: str) -> dict:
    """A config file (JSON or YAML) as a dict; a missing, unreadable or malformed file is a UsageError."""
    import yaml

    try:
        with open(os.path.expanduser(path), encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read config file {path}: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        data = yaml.safe_load(text) if text.strip() else {}
    except yaml.YAMLError as exc:
        raise UsageError(f"config file {path} is not JSON or YAML: {' '.join(str(exc).split())}") from None
    if not isinstance(data, dict):
        raise UsageError(f"config file {path} must hold a mapping of field names to values")
    return data


def _unwrap(annotation):
    """The model class inside Optional[...] / Annotated[...], else None."""
    for arg in (annotation, *typing.get_args(annotation)):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
    return None


def _takes_text(annotation) -> bool:
    """Whether a field's type accepts a plain string (then a --set value stays text, never JSON)."""
    if annotation is str:
        return True
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return any(isinstance(a, str) for a in typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType, Annotated):
        return any(_takes_text(a) for a in typing.get_args(annotation) if a is not type(None))
    return False


def _is_list(annotation) -> bool:
    origin = typing.get_origin(annotation)
    if origin in (list, tuple):
        return True
    return origin is not None and any(_is_list(a) for a in typing.get_args(annotation))


def parse_value(raw: str, annotation) -> Any:
    """A --set value for a field: text for text fields, JSON for others, `a,b` for lists of text."""
    if _takes_text(annotation):
        return raw
    try:
        return json.loads(raw)
    except ValueError:
        if _is_list(annotation):
            return [part.strip() for part in raw.split(",") if part.strip()]
        return raw


def apply_set(data: dict, assignment: str, model: type[BaseModel]) -> dict:
    """`FIELD=VALUE` (FIELD may be dotted, e.g. cluster.queue) into the nested values `data`."""
    path, eq, raw = assignment.partition("=")
    path = path.strip()
    if not eq or not path:
        raise UsageError(f"--set {assignment!r}: expected FIELD=VALUE, e.g. --set cluster.queue=a100")
    target, cls, parts = data, model, path.split(".")
    for i, name in enumerate(parts):
        field = cls.model_fields.get(name) if cls is not None else None
        if field is None:
            known = ", ".join(sorted(cls.model_fields)) if cls is not None else "none (not a nested config)"
            raise UsageError(f"--set {path}: no field {name!r} in {'.'.join(parts[:i]) or 'the config'} "
                             f"(fields: {known})")
        if i == len(parts) - 1:
            target[name] = parse_value(raw, field.annotation)
        else:
            inner = target.get(name)
            if not isinstance(inner, dict):  # a nested model given as an object: set fields on a copy
                inner = inner.model_dump() if isinstance(inner, BaseModel) else {}
            target[name] = dict(inner)
            target, cls = target[name], _unwrap(field.annotation)
    return data


def merge(base: dict, override: dict) -> dict:
    """`override` over `base`, nested dicts merged key by key."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def load_config(model: type[BaseModel], base: dict | None = None, *, file: str | None = None,
                sets: list[str] = (), flags: dict[str, str] | None = None, origin: Origin | None = None):
    """`model` from base values, a --config-file and --set assignments (later ones win). `origin` says
    what the user typed for the base values (the CLI's flags and its own --config-file), `flags` the
    flags of callers that know no more."""
    data = dict(base or {})
    origin = origin or Origin(dict(flags or {}))
    if file:
        read = read_config_file(file)
        data = merge(data, read)
        origin = Origin(origin.flags, file, field_paths(read), origin.set_paths)
    paths = tuple(a.partition("=")[0].strip() for a in sets)
    origin = Origin(origin.flags, origin.file, origin.file_paths, (*origin.set_paths, *paths))
    for assignment in sets:
        data = apply_set(data, assignment, model)
    check_kinds(model, data, origin)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise UsageError(explain(exc, origin=origin)) from None


def _kinds(annotation) -> set:
    """The plain types a field annotation admits (Optional, Annotated and unions unwrapped)."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType, Annotated):
        args = typing.get_args(annotation)
        return set().union(*(_kinds(a) for a in (args[:1] if origin is Annotated else args)))
    if origin is Literal:
        return {type(a) for a in typing.get_args(annotation)}
    return {origin or annotation}


def check_kinds(model: type[BaseModel], data: dict, origin: Origin, prefix: str = "") -> None:
    """true/false is not a number and a number is not true/false: pydantic's lax mode would read
    `--set steps=true` as 1 step and `tensorboard: 0` as false; here each is a usage error naming
    what the user typed."""
    for key, value in data.items():
        info = model.model_fields.get(key) if isinstance(key, str) else None
        if info is None:
            continue
        path = f"{prefix}.{key}" if prefix else key
        kinds = _kinds(info.annotation)
        inner = _unwrap(info.annotation)
        if isinstance(value, dict) and inner is not None:
            check_kinds(inner, value, origin, path)
        elif isinstance(value, bool) and bool not in kinds and kinds & {int, float}:
            raise UsageError(f"invalid {origin.name(path, value)}: true/false where a number belongs")
        elif type(value) in (int, float) and bool in kinds and not kinds & {int, float, str}:
            raise UsageError(f"invalid {origin.name(path, value)}: a number where true or false belongs")


# -- where pods run -----------------------------------------------------------------------------
def _quantity(pattern: str, example: str):
    def check(value: str) -> str:
        if not re.fullmatch(pattern, value):
            raise ValueError(f"{value!r} is not a Kubernetes quantity such as {example}")
        return value
    return AfterValidator(check)


# Kubernetes quantities, in the forms the renderers understand: "8" or "500m" CPUs, "64Gi" memory.
# (At most 9 digits before the point: more would overflow the API server's quantities, not fit a node.)
CpuQuantity = Annotated[str, _quantity(r"[0-9]{1,9}(\.[0-9]{1,3})?|[0-9]{1,9}m", "8 or 500m")]
MemoryQuantity = Annotated[str, _quantity(r"[0-9]{1,9}(\.[0-9]{1,3})?([KMGT]i?)?", "64Gi or 512Mi")]

# A container image reference (the distribution grammar: [host[:port]/]path[:tag][@digest]).
_IMAGE = re.compile(r"(?:[a-zA-Z0-9.-]+(?::[0-9]+)?/)?[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
                    r"(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?"
                    r"(?:@[a-z0-9]+(?:[+._-][a-z0-9]+)*:[0-9a-fA-F]{32,})?")


def check_image(value: str) -> str:
    if len(value) > 512 or not _IMAGE.fullmatch(value):
        raise ValueError(f"{value!r} is not a container image reference such as "
                         "us-docker.pkg.dev/PROJECT/laclip/train:0.1.0")
    return value


DEFAULT_NAMESPACE = "laclip"
DEFAULT_SERVICE_ACCOUNT = "laclip-runner"
DEFAULT_REGISTRY = "us-docker.pkg.dev/YOUR_PROJECT/laclip"
IMAGE_TAG = "0.1.0"  # images/build.sh pushes every image with this tag


def default_image(component: str) -> str:
    """The image a stage runs in, as pushed by images/build.sh (override with --image)."""
    registry = os.environ.get("LACLIP_REGISTRY", DEFAULT_REGISTRY)
    return f"{registry}/{component}:{os.environ.get('LACLIP_IMAGE_TAG', IMAGE_TAG)}"


class ClusterOptions(BaseModel):
    """Where and how pods run on GKE."""

    model_config = ConfigDict(extra="forbid")

    namespace: str = Field("laclip", description="Kubernetes namespace")
    service_account: str = Field(DEFAULT_SERVICE_ACCOUNT,
                                 description="Kubernetes ServiceAccount bound to a Google one (Workload Identity)")
    image: Annotated[str, AfterValidator(check_image)] | None = Field(
        None, description="container image [default: $LACLIP_REGISTRY/<stage>:<tag>]")
    accelerator: Accelerator = Field("nvidia-tesla-a100", description="GKE accelerator of the GPU node pool")
    gpus: int = Field(1, ge=0, le=16, description="GPUs per pod")
    cpu: CpuQuantity = Field("8", description="CPU request per pod")
    memory: MemoryQuantity = Field("64Gi", description="memory per pod")
    shm: MemoryQuantity = Field("16Gi", description="size of the pod's /dev/shm")
    spot: bool = Field(False, description="run on Spot VMs (preemptions are not counted as failures)")
    queue: str | None = Field(None, description="Kueue LocalQueue: the job waits there for quota")
    priority_class: str | None = Field(None, description="PriorityClass of the pods")
    ttl_seconds_after_finished: int = Field(7 * 24 * 3600, ge=0, le=2**31 - 1,  # an int32 in the API
                                            description="seconds a finished job is kept")
