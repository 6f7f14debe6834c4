"""The vendored CRDs are what tests/crds/README.md says they are, and the strict check is strict."""

from __future__ import annotations

import hashlib
import re

import jsonschema
import pytest

from tests import crd_schema


def git_blob_id(data: bytes) -> str:
    """The id `git hash-object` gives a file."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def test_every_vendored_crd_is_listed_with_its_source():
    readme = (crd_schema.CRDS / "README.md").read_text()
    rows = {m.group(1): m.groups()[1:] for m in re.finditer(
        r"^\| (\S+\.yaml) \| (\S+/\S+) \| (v[\d.]+) \(\w+\) \| (\S+) \| ([0-9a-f]{40}) \|$", readme, re.M)}
    files = sorted(p.name for p in crd_schema.CRDS.glob("*.yaml"))
    assert sorted(rows) == files
    for name in files:
        repo, tag, path, blob = rows[name]
        assert name.startswith(f"{repo.split('/')[1]}-{tag}-") and name.endswith(path.rsplit("/", 1)[1]), name
        assert git_blob_id((crd_schema.CRDS / name).read_bytes()) == blob, f"{name} is not the {tag} file"


def test_closed_schemas_refuse_unknown_fields_but_keep_maps_and_preserved_fields():
    schema = crd_schema.closed({"type": "object", "properties": {
        "spec": {"type": "object", "properties": {"replicas": {"type": "integer"}}},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "raw": {"type": "object", "x-kubernetes-preserve-unknown-fields": True, "properties": {"a": {}}},
        "name": {"type": "string", "pattern": "^(?i)[a-z]+$"}}})
    validator = jsonschema.Draft7Validator(schema)
    assert validator.is_valid({"spec": {"replicas": 2}, "labels": {"any": "x"}, "raw": {"b": 1}, "name": "Ab"})
    assert not validator.is_valid({"spec": {"replica": 2}})
    assert not validator.is_valid({"spek": {}})
    assert not validator.is_valid({"name": "a1"})  # RE2's `^(?i)` kept its meaning


def test_an_unserved_kind_is_named():
    with pytest.raises(LookupError, match="no vendored CRD serves jobset.x-k8s.io/v1 JobSet"):
        crd_schema.validate({"apiVersion": "jobset.x-k8s.io/v1", "kind": "JobSet", "metadata": {}})
