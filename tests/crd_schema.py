"""Strict validation of custom objects against the CRDs vendored in tests/crds/ (see its README).

A CRD's openAPIV3Schema is JSON Schema with Kubernetes extensions. The API server prunes (and,
with `kubectl --validate=strict` / field validation Strict, refuses) fields a structural schema
does not name, except below `x-kubernetes-preserve-unknown-fields: true`; plain JSON Schema would
accept them. So every object schema that lists `properties` and no `additionalProperties` is
closed here, which makes a misspelt field an error, as the API server's strict field validation
makes it. Not checked: CEL rules (`x-kubernetes-validations`), string formats, the metadata of
the object itself (names are checked by the renderers, the rest by kubernetes-validate).
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Any

import jsonschema
import yaml

CRDS = Path(__file__).parent / "crds"


def closed(schema: Any) -> Any:
    """A copy of an openAPIV3Schema in which unknown fields are errors (as the API server's strict
    field validation makes them), except where the schema preserves unknown fields."""
    if isinstance(schema, list):
        return [closed(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: closed(v) if k in ("items", "additionalProperties", "anyOf", "allOf", "oneOf", "not")
           else v for k, v in schema.items()}
    if isinstance(out.get("pattern"), str):  # Go's RE2 takes `^(?i)...`; Python wants the flags first
        out["pattern"] = re.sub(r"^\^\(\?([a-zA-Z]+)\)", r"(?\1)^", out["pattern"])
    if "properties" in out:
        out["properties"] = {name: closed(sub) for name, sub in schema["properties"].items()}
        if "additionalProperties" not in out and not schema.get("x-kubernetes-preserve-unknown-fields"):
            out["additionalProperties"] = False
    return out


@functools.lru_cache(maxsize=None)
def _crds() -> dict[tuple[str, str], dict]:
    """(group/version, kind) -> the CRD version's schema, for every served version of every CRD file."""
    found = {}
    for path in sorted(CRDS.glob("*.yaml")):
        with path.open() as f:
            crd = yaml.load(f, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        spec = crd["spec"]
        for version in spec["versions"]:
            if version.get("served", True):
                found[f"{spec['group']}/{version['name']}", spec["names"]["kind"]] = \
                    {"schema": version["schema"]["openAPIV3Schema"], "file": path.name}
    return found


@functools.lru_cache(maxsize=None)
def _validator(api_version: str, kind: str):
    entry = _crds().get((api_version, kind))
    if entry is None:
        known = ", ".join(sorted(f"{v} {k}" for v, k in _crds()))
        raise LookupError(f"no vendored CRD serves {api_version} {kind} (tests/crds/ has: {known})")
    schema = closed(entry["schema"])
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft7Validator)
    return cls(schema)


def crd_file(obj: dict) -> str:
    """The vendored CRD file that `obj`'s apiVersion and kind are checked against."""
    _validator(obj["apiVersion"], obj["kind"])
    return _crds()[obj["apiVersion"], obj["kind"]]["file"]


def validate(obj: dict) -> None:
    """Raise jsonschema.ValidationError (naming the path) unless `obj` passes its CRD's schema strictly."""
    validator = _validator(obj["apiVersion"], obj["kind"])
    errors = sorted(validator.iter_errors(obj), key=lambda e: list(e.absolute_path))
    if errors:
        first = errors[0]
        where = ".".join(str(p) for p in first.absolute_path) or "(root)"
        raise jsonschema.ValidationError(f"{obj['kind']} {obj.get('metadata', {}).get('name')}: {where}: "
                                         f"{first.message}" + (f" (and {len(errors) - 1} more)"
                                                               if len(errors) > 1 else ""))
