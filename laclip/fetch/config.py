"""FetchConfig: one typed config for `laclip datasets get-eval` (and its Job), shared by the CLI,
jobs/fetch.py and the worker. No torch, no huggingface_hub here: the CLI renders the Job without either.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from laclip.config import ClusterOptions

SPLITS = ("test", "train")
CPU_POD = {"gpus": 0, "cpu": "2", "memory": "8Gi"}
EVERY = "*"  # in dataset_splits: every split folder the repository has
REPO_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*")


class FetchConfig(BaseModel):
    """What to copy from the Hugging Face hub into the store: evaluation sets by name or suite."""

    model_config = ConfigDict(extra="forbid")

    datasets: list[str] = Field(min_length=1, description="comma-separated dataset names or suites "
                                                          "(laclip-paper, datacomp)")
    root: str | None = Field(None, description="store root the sets go to (datasets/<name>/) [default: --root]")
    run: str | None = Field(None, description="names the Job and labels its pods [default: get-eval-<suite>]")
    revision: str | None = Field(None, description="hub revision (branch, tag or commit) of a first fetch "
                                                   "[default: main; a resumed fetch keeps the recorded one]")
    splits: list[str] | None = Field(None, description="comma-separated splits to copy [default: those the "
                                                       "suite's tasks read: test, and train for few-shot and "
                                                       "the linear probe]")
    repos: dict[str, str] = Field(default_factory=dict, description="NAME=OWNER/REPO: another hub repository "
                                                                    "for a dataset (your own copy of CUB)")
    endpoint: str | None = Field(None, description="hub endpoint [default: $HF_ENDPOINT, else huggingface.co]")
    token_secret: str | None = Field(None, description="Kubernetes Secret whose key HF_TOKEN the pods read "
                                                       "(gated or private repositories)")
    workers: int = Field(4, ge=1, le=64, description="files copied at once per dataset")
    scratch: str | None = Field(None, description="local folder each file passes through on its way to the "
                                                  "store [default: ~/.cache/laclip/get-eval, /scratch in pods]")
    parallelism: int = Field(4, ge=1, le=64, description="datasets fetched at once by the Job")
    scratch_size: str = Field("50Gi", pattern=r"^[1-9][0-9]*(Mi|Gi|Ti)$",
                              description="the pods' scratch volume (a few of the largest files at once)")
    dataset_splits: dict[str, list[str]] = Field(default_factory=dict, description="splits per dataset "
                                                                                   "(filled from the suites)")
    suites: list[str] = Field(default_factory=list, description="the suites --datasets named (filled in)")
    cluster: ClusterOptions = Field(default_factory=lambda: ClusterOptions(**CPU_POD))

    @field_validator("cluster", mode="before")
    @classmethod
    def _cpu_pod(cls, value):
        """A CPU pod unless told otherwise: `--set cluster.queue=q` keeps gpus=0."""
        return {**CPU_POD, **value} if isinstance(value, dict) else value

    @field_validator("datasets", "splits", mode="before")
    @classmethod
    def _comma(cls, value):
        if isinstance(value, str):
            value = value.split(",")
        return None if value is None else list(dict.fromkeys(v.strip() for v in value if v.strip()))

    @field_validator("splits")
    @classmethod
    def _splits(cls, value):
        for split in value or []:
            if not re.fullmatch(r"[A-Za-z0-9_.-]+", split):
                raise ValueError(f"split {split!r} is not a folder name")
        return value

    @field_validator("repos")
    @classmethod
    def _repos(cls, value: dict[str, str]) -> dict[str, str]:
        for name, repo in value.items():
            if not REPO_RE.fullmatch(repo):
                raise ValueError(f"{name}={repo}: a hub repository is OWNER/NAME")
        return value

    @model_validator(mode="after")
    def _expand(self) -> "FetchConfig":
        from laclip.data.registry import check_name
        from laclip.eval.suites import expand, is_suite, load

        names: list[str] = []
        splits: dict[str, list[str]] = {}
        for ref in self.datasets:
            if is_suite(ref):
                self.suites = list(dict.fromkeys(self.suites + [ref]))
                suite = load(ref)
                found = expand([ref], [t for e in suite.datasets for t in e.tasks])
                for name in found.datasets:
                    if name not in names:
                        names.append(name)
                        splits[name] = suite.dataset(name).splits()
                continue
            check_name(ref)
            if ref not in names:
                names.append(ref)
                # a set named on its own: every split a suite reads on it; in no suite, every split
                need = set().union(*(load(s).dataset(ref).splits() for s in self.suites_naming(ref)))
                splits[ref] = [s for s in SPLITS if s in need] or [EVERY]
        self.datasets = names
        if self.splits:
            splits = {n: list(self.splits) for n in names}
        self.dataset_splits = {**splits, **self.dataset_splits}
        if self.run is None:
            label = self.suites[0] if len(self.suites) == 1 else (names[0] if len(names) == 1 else "datasets")
            self.run = f"get-eval-{label}"[:63].rstrip("-")
        return self

    @staticmethod
    def suites_naming(name: str) -> list[str]:
        from laclip.eval.suites import load, names

        return [s for s in names() if load(s).dataset(name) is not None]

    def repo_of(self, name: str) -> str | None:
        from laclip.eval.suites import find

        if name in self.repos:
            return self.repos[name]
        entry = find(name)
        return entry.hub if entry else None

    def job_name(self) -> str:
        from laclip.eval.config import slug

        n = len(self.datasets)
        limit = 63 - (len(f"-{n - 1}") if n > 1 else 0)
        return slug(self.run)[:limit].rstrip("-")
