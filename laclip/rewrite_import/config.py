"""ImportConfig: the one typed config of the rewrite-import stage (no torch; the CLI builds it).

The inputs are files outside the store (a download of the paper's release, or rewrites a user
made with other tools): `original` holds the captions, one row per sample of the release (a CSV
of image path and caption, or one caption per line), and each source file holds one rewrite per
line, line i belonging to row i of `original`.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from laclip.config import ClusterOptions
from laclip.errors import UsageError
from laclip.rewrite.config import REJECT_SUFFIX, RESERVED_COLUMNS, SOURCE_RE, check_rewrite_id

# Bumped when the normalisation, the choice among duplicates or the output layout change what an
# import writes: a new version is a new default rewrite id.
IMPORT_VERSION = 1
# The release's own loader counts a CSV row only when its first field ends so (a header row
# therefore does not count); `csv_rows="all"` counts every row.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
PROVENANCE_COLUMN = "release_line"  # the 0-based row of the release a sample's rewrites came from
NOT_RELEASED = "not_in_release"  # the <source>_rejected reason of a sample whose caption is not in the release


def _import_cluster() -> ClusterOptions:
    # A CPU job: it streams text and writes parquets. The memory covers CC12M (see BENCHMARKS.md).
    return ClusterOptions(gpus=0, cpu="4", memory="8Gi", shm="1Gi")


class ImportConfig(BaseModel):
    """What decides an imported rewrite set, plus where it runs."""

    model_config = ConfigDict(extra="forbid")

    dataset: str = Field(description="dataset under datasets/ whose shards get the rewrites (cc12m, cc3m...)")
    original: str = Field(description="the release's captions: a CSV of image path and caption (cc12m_original.csv) "
                                      "or one caption per line (redcaps_original.txt); a path or gs:// URL, "
                                      "optionally .gz")
    sources: dict[str, str] = Field(description="rewrite files by source name (NAME=FILE): one rewrite per line, "
                                                "line i for row i of --original")
    run: str | None = Field(None, description="run id: names the Job [default: import-<dataset>-<time>-<random>]")
    root: str | None = Field(None, description="store root [default: --root / $LACLIP_ROOT]")
    rewrite_id: str | None = Field(None, description="output folder name [default: import-<hash of the inputs' "
                                                     "names and settings>]")
    original_format: Literal["auto", "csv", "tsv", "lines"] = Field(
        "auto", description="auto (by the name: .csv is CSV, .tsv tab-separated) | csv | tsv | lines  [default: auto]")
    csv_rows: Literal["images", "all"] = Field(
        "images", description="images: a CSV row counts when its first field ends in .png/.jpg/.jpeg, as the "
                              "release's loader reads it (a header row does not) | all: every row")
    caption_column: int = Field(1, ge=0, le=1000, description="CSV field holding the caption  [default: 1]")
    choose: Literal["spread", "first"] = Field(
        "spread", description="several release rows with one caption: spread (the i-th sample with it takes the "
                              "i-th row, cycling) | first (every sample takes the first row)")
    filter: Literal["none", "laclip"] = Field(
        "none", description="none: keep the released rewrites as they are (empty lines aside) | laclip: drop what "
                            "laclip's rewrite filters reject (echoes, repetition...)")
    work_dir: str | None = Field(None, description="local scratch folder for the spill files [default: the temp dir]")
    chunk_rows: int = Field(65_536, ge=16, le=4_000_000, description="release rows read per batch")
    cluster: ClusterOptions = Field(default_factory=_import_cluster)
    backoff_limit: int = Field(2, ge=0, le=100, description="retries of the Job's pod")

    @field_validator("sources")
    @classmethod
    def _check_sources(cls, value: dict[str, str]) -> dict[str, str]:
        if not value:
            raise ValueError("at least one rewrite file is needed (--source NAME=FILE)")
        for name, path in value.items():
            if not SOURCE_RE.fullmatch(name) or name in RESERVED_COLUMNS or name.endswith(REJECT_SUFFIX) \
                    or name == PROVENANCE_COLUMN:
                raise ValueError(f"source name {name!r} must be lower-case letters, digits and '_' (it becomes a "
                                 f"parquet column), not 'key', 'caption' or {PROVENANCE_COLUMN!r} and not ending "
                                 f"in {REJECT_SUFFIX!r}")
            if not str(path).strip():
                raise ValueError(f"source {name!r} names no file")
        return value

    @field_validator("original")
    @classmethod
    def _check_original(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("names no file")
        return value.strip()

    def check(self) -> "ImportConfig":
        from laclip.data.registry import check_name

        check_name(self.dataset)
        if self.rewrite_id is not None:
            check_rewrite_id(self.rewrite_id)
        paths = [self.original, *self.sources.values()]
        if len(set(paths)) != len(paths):
            raise UsageError("--original and every --source must be different files")
        return self

    @property
    def format(self) -> str:
        if self.original_format != "auto":
            return self.original_format
        name = self.original.lower().removesuffix(".gz")
        return "csv" if name.endswith(".csv") else "tsv" if name.endswith(".tsv") else "lines"

    @property
    def tabular(self) -> bool:
        """Rows of fields (CSV or TSV), the caption in one of them; else one caption per line."""
        return self.format in ("csv", "tsv")

    def output_fingerprint(self) -> dict:
        """What decides the outputs besides the files' contents (recorded as digests in the run record)."""
        return {"kind": "import", "version": IMPORT_VERSION, "original": self.original, "sources": self.sources,
                "format": self.format, "csv_rows": self.csv_rows if self.tabular else None,
                "caption_column": self.caption_column if self.tabular else None,
                "choose": self.choose, "filter": self.filter,
                # what laclip's filters keep changes with their version (laclip.rewrite.config.FILTER_VERSION)
                **({"filter_version": _filter_version()} if self.filter == "laclip" else {})}

    def resolved_rewrite_id(self) -> str:
        from laclip.identity import digest

        if self.rewrite_id:
            return check_rewrite_id(self.rewrite_id)
        return f"import-{digest(self.output_fingerprint(), 10)}"

    def worker_json(self) -> str:
        return self.model_dump_json(exclude={"cluster", "backoff_limit", "run"}, exclude_none=True)


def _filter_version() -> int:
    from laclip.rewrite.config import FILTER_VERSION

    return FILTER_VERSION


def source_name(path: str, dataset: str | None = None) -> str:
    """The source a file of the release is for: `cc12m_chatgpt.txt[.gz]` -> chatgpt."""
    base = path.rstrip("/").rsplit("/", 1)[-1].lower()
    base = re.sub(r"(\.gz)?$", "", base)
    base = re.sub(r"\.(txt|csv|tsv)$", "", base)
    if dataset and base.startswith(dataset + "_"):
        base = base[len(dataset) + 1:]
    elif "_" in base:
        base = base.rsplit("_", 1)[-1]
    return re.sub(r"[^a-z0-9_]", "_", base)
