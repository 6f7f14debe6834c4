"""Copy CLIP_benchmark's webdataset copy of an evaluation set from the Hugging Face hub into the
store, through huggingface_hub: `datasets/<name>/` holds the repository's files as they are
(classnames.txt, templates, <split>/nshards.txt and N.tar), which laclip.eval.datasets reads.

    datasets/<name>/laclip-source.json   written first, create-only: repository, the commit the
                                         revision resolved to, endpoint, every file's size and hash

The record pins the commit: a resumed or later fetch (another split, say) copies from the same one,
never a newer commit into the same folder. A file is done when the store holds it at the recorded
size; each goes hub -> scratch folder -> store (create-only, atomic), the big shards before the
small metadata (nshards.txt last), so a split that lacks nshards.txt is still being fetched. A file
already in the store is never fetched again; one cut off mid-download starts over (or resumes, where
the installed huggingface_hub keeps partial files in `local_dir` across processes: 2.4 does not).
The endpoint is huggingface_hub's: $HF_ENDPOINT, or `endpoint`; the token is its own too ($HF_TOKEN,
or a `huggingface-cli login`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import shutil
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from laclip import __version__, claim, layout
from laclip.errors import AlreadyExists, DataError, LaclipError, UsageError
from laclip.fetch.config import EVERY, FetchConfig
from laclip.storage import open_store
from laclip.storage.base import Store

log = logging.getLogger("laclip.fetch")
METADATA = ("nshards.txt",)  # written last in a split: its presence says the split's shards are there


class Progress:
    """Where a fetch reports what it does (the CLI draws bars; pods log)."""

    def begin(self, name: str, files: int, total: int) -> None: ...

    def advance(self, name: str, nbytes: int) -> None: ...

    def end(self, name: str) -> None: ...


@dataclass
class Outcome:
    name: str
    state: str  # fetched | up to date | kept (a folder laclip did not fetch) | missing (no source)
    repo: str | None = None
    revision: str | None = None
    files: int = 0
    bytes: int = 0
    present: int = 0
    notes: list[str] = field(default_factory=list)


def hub_module():
    try:
        import huggingface_hub
    except ImportError:
        raise UsageError("get-eval needs huggingface_hub: pip install 'laclip[eval]' (or huggingface_hub), "
                         "or pass --job to fetch from the cluster") from None
    return huggingface_hub


def _endpoint(cfg: FetchConfig) -> str:
    if cfg.endpoint:
        return cfg.endpoint.rstrip("/")
    from huggingface_hub import constants

    return constants.ENDPOINT


def hub_error(exc: Exception, repo: str, endpoint: str) -> LaclipError | None:
    """A huggingface_hub or network error as one readable LaclipError; None if it is neither."""
    from huggingface_hub import utils

    gated = getattr(utils, "GatedRepoError", ())
    if gated and isinstance(exc, gated):
        return DataError(f"{repo} on {endpoint} is gated: accept its terms on the hub, then give a token "
                         "(HF_TOKEN, or --token-secret for a Job)")
    if isinstance(exc, utils.RepositoryNotFoundError):
        return DataError(f"no dataset repository {repo} on {endpoint} (or it is private: give a token with "
                         "HF_TOKEN, or --token-secret for a Job)")
    if isinstance(exc, utils.RevisionNotFoundError):
        return UsageError(f"{repo} on {endpoint} has no revision like that: {_first_line(exc)}")
    if isinstance(exc, utils.EntryNotFoundError):
        return DataError(f"{repo} on {endpoint}: {_first_line(exc)}")
    if isinstance(exc, utils.HfHubHTTPError):
        status = getattr(getattr(exc, "response", None), "status_code", None)
        if status in (401, 403):
            return DataError(f"{repo} on {endpoint} refused access ({status}): give a token (HF_TOKEN)")
        return LaclipError(f"the hub at {endpoint} answered {status} for {repo}: {_first_line(exc)}")
    if isinstance(exc, OSError) or type(exc).__module__.startswith(("httpx", "requests", "urllib3")):
        return LaclipError(f"cannot reach the hub at {endpoint} for {repo}: {_first_line(exc)}")
    return None


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def manifest(cfg: FetchConfig, repo: str, revision: str | None) -> tuple[str, dict[str, dict]]:
    """(commit, {path: {size, sha256}}) of the repository at `revision`; dot files left out."""
    hub = hub_module()
    endpoint = _endpoint(cfg)
    try:
        info = hub.HfApi(endpoint=endpoint).dataset_info(repo, revision=revision, files_metadata=True)
    except Exception as exc:
        mapped = hub_error(exc, repo, endpoint)
        if mapped is None:
            raise
        raise mapped from None
    files = {}
    for sib in info.siblings or []:
        if any(part.startswith(".") for part in sib.rfilename.split("/")):
            continue
        lfs = sib.lfs
        sha = (lfs.get("sha256") if isinstance(lfs, dict) else getattr(lfs, "sha256", None)) if lfs else None
        files[sib.rfilename] = {"size": sib.size, "sha256": sha}
    if not info.sha or not files:
        raise DataError(f"{repo} on {endpoint} lists no files at revision {revision or 'main'}")
    return info.sha, files


def _size(version: str | None) -> int | None:
    """The size in a Store version (`<size>-<mtime or generation>`, laclip.storage)."""
    try:
        return int(version.split("-", 1)[0]) if version else None
    except ValueError:
        return None


def _record(store: Store, name: str) -> dict | None:
    record = claim.read_record(store, layout.dataset_source(name), "delete it to fetch again")
    if record is not None and not (isinstance(record.get("repo"), str) and isinstance(record.get("revision"), str)
                                   and isinstance(record.get("files"), dict)):
        raise DataError(f"{store.url_of(layout.dataset_source(name))} is damaged: it lacks the repository, revision "
                        "or file list of a fetch; delete it to fetch again")
    return record


def wanted(files: dict[str, dict], splits: list[str]) -> tuple[list[str], list[str]]:
    """(files to hold, splits asked for that the repository lacks): top-level files and those under
    the splits, shards first and nshards.txt last."""
    have = {p.split("/", 1)[0] for p in files if "/" in p}
    chosen = sorted(have) if EVERY in splits else [s for s in splits if s in have]
    paths = [p for p in files if "/" not in p or p.split("/", 1)[0] in chosen]
    paths.sort(key=lambda p: (p.rsplit("/", 1)[-1] in METADATA, "/" not in p, p))
    return paths, [s for s in splits if s != EVERY and s not in have]


def fetch_dataset(cfg: FetchConfig, store: Store, name: str, progress: Progress | None = None) -> Outcome:
    """Bring datasets/<name>/ up to the recorded revision for cfg's splits of it."""
    progress = progress or Progress()
    folder = layout.dataset_folder(name)
    record = _record(store, name)
    repo = cfg.repo_of(name)
    if record is None:
        present = store.versions(folder + "/")
        if present:
            if any(p.endswith("nshards.txt") for p in present):
                return Outcome(name, "kept", notes=[f"{store.url_of(folder)}/ was not fetched by get-eval: "
                                                    "left as it is"])
            raise DataError(f"{store.url_of(folder)}/ holds files that get-eval did not fetch and no "
                            "<split>/nshards.txt: move them away, then fetch again")
        if repo is None:
            from laclip.eval.suites import find

            entry = find(name)
            why = entry.note if entry and entry.note else "no suite names a hub repository for it"
            raise DataError(f"{name}: nothing to fetch it from: {why}; or name a copy: --repo {name}=OWNER/REPO")
        commit, files = manifest(cfg, repo, cfg.revision)
        record = {"repo": repo, "revision": commit, "requested_revision": cfg.revision or "main",
                  "endpoint": _endpoint(cfg), "files": files, "laclip": __version__,
                  "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
        if not claim.write_once(store, layout.dataset_source(name), json.dumps(record, indent=1) + "\n"):
            record = _record(store, name)  # another pod got there first: its record stands
    if record["repo"] != repo and repo is not None:
        raise DataError(f"{store.url_of(folder)}/ holds {record['repo']}, not {repo}: give this copy another "
                        "name, or delete the folder to fetch it again")
    if cfg.revision and cfg.revision not in (record["revision"], record.get("requested_revision")):
        raise DataError(f"{store.url_of(folder)}/ holds {record['repo']} at {record['revision'][:12]} "
                        f"(asked for {record.get('requested_revision')}), not {cfg.revision}: the store is "
                        "create-only; give this revision another name or delete the folder")
    files: dict[str, dict] = record["files"]
    paths, lacking = wanted(files, cfg.dataset_splits.get(name, [EVERY]))
    out = Outcome(name, "up to date", record["repo"], record["revision"])
    out.notes += [f"{record['repo']} has no {s} split: the tasks that read it will not run on {name}"
                  for s in lacking]
    held = store.versions(folder + "/")
    todo = []
    for path in paths:
        size = _size(held.get(f"{folder}/{path}"))
        expected = files[path]["size"]
        if size is None:
            todo.append(path)
        elif expected is not None and size != expected:
            raise DataError(f"{store.url_of(folder + '/' + path)} has {size} bytes where {record['repo']} has "
                            f"{expected}: delete it and fetch again")
        else:
            out.present += 1
    if not todo:
        return out
    total = sum(files[p]["size"] or 0 for p in todo)
    progress.begin(name, len(todo), total)
    scratch = Path(cfg.scratch or default_scratch()) / name / record["revision"][:12]
    scratch.mkdir(parents=True, exist_ok=True)
    lock = threading.Lock()

    def one(path: str) -> None:
        n = _copy_file(cfg, store, record, folder, path, scratch, lambda k: progress.advance(name, k))
        with lock:
            out.files += 1
            out.bytes += n

    shards = [p for p in todo if p.rsplit("/", 1)[-1] not in METADATA and "/" in p]
    last = [p for p in todo if p not in shards]
    with ThreadPoolExecutor(max_workers=cfg.workers) as pool:
        for batch in (shards, last):  # every shard before any nshards.txt
            for future in [pool.submit(one, p) for p in batch]:
                future.result()
    progress.end(name)
    shutil.rmtree(scratch, ignore_errors=True)
    out.state = "fetched"
    log.info("%s: %d files (%d bytes) from %s@%s", name, out.files, out.bytes, record["repo"], record["revision"])
    return out


def default_scratch() -> str:
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        return tempfile.gettempdir()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "laclip", "get-eval")


def _tqdm_forwarding(advance):
    """A silent tqdm that hands each update to `advance` (huggingface_hub's `tqdm_class`)."""
    from tqdm.auto import tqdm

    class Forward(tqdm):
        def __init__(self, *args, **kwargs):
            kwargs["disable"] = True
            super().__init__(*args, **kwargs)

        def update(self, n=1):
            if n:
                advance(int(n))
            return super().update(n)

    return Forward


def _copy_file(cfg: FetchConfig, store: Store, record: dict, folder: str, path: str, scratch: Path,
               advance) -> int:
    """hub -> scratch -> store (create-only) for one file; its size. The size and, for LFS files, the
    sha256 are checked against the record before the store sees a byte."""
    import inspect

    hub = hub_module()
    endpoint = _endpoint(cfg)
    kwargs = {}
    if "tqdm_class" in inspect.signature(hub.hf_hub_download).parameters:
        kwargs["tqdm_class"] = _tqdm_forwarding(advance)
    try:
        local = Path(hub.hf_hub_download(record["repo"], path, repo_type="dataset", revision=record["revision"],
                                         local_dir=str(scratch), endpoint=endpoint, **kwargs))
    except Exception as exc:
        mapped = hub_error(exc, record["repo"], endpoint)
        if mapped is None:
            raise
        raise mapped from None
    expected = record["files"][path]
    size = local.stat().st_size
    if expected["size"] is not None and size != expected["size"]:
        local.unlink()
        raise LaclipError(f"{record['repo']}/{path}: downloaded {size} bytes, the hub lists {expected['size']}")
    if expected.get("sha256"):
        digest = hashlib.sha256()
        with open(local, "rb") as f:
            for block in iter(lambda: f.read(1 << 22), b""):
                digest.update(block)
        if digest.hexdigest() != expected["sha256"]:
            local.unlink()
            raise LaclipError(f"{record['repo']}/{path}: sha256 {digest.hexdigest()[:12]}... is not the hub's "
                              f"{expected['sha256'][:12]}...: downloaded again on the next try")
    if "tqdm_class" not in kwargs:
        advance(size)
    try:
        store.upload_file(local, f"{folder}/{path}", create_only=True)
    except AlreadyExists:
        pass  # another pod of this fetch stored it: the same bytes of the same commit (checked against the record)
    local.unlink()
    return size


def fetch(cfg: FetchConfig, progress: Progress | None = None, datasets: list[str] | None = None) -> list[Outcome]:
    """Every dataset of cfg (or `datasets`); the errors of those that failed are raised together at
    the end, after the others are fetched (the error's `outcomes` says what every dataset did)."""
    store = open_store(cfg.root)
    outcomes, errors = [], []
    for name in datasets or cfg.datasets:
        try:
            outcomes.append(fetch_dataset(cfg, store, name, progress))
        except LaclipError as exc:
            errors.append(exc)
            outcomes.append(Outcome(name, "missing", notes=[str(exc)]))
    if errors:
        first = errors[0]
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        failure = first if len(errors) == 1 else _Failed(errors, f"{first}{more}")
        failure.outcomes = outcomes  # what the others did, for the caller to show
        raise failure
    return outcomes


class _Failed(LaclipError):
    """Several datasets failed: permanent only if every one of them is (a retry cannot help any)."""

    def __init__(self, errors: list[LaclipError], message: str):
        super().__init__(message)
        self.errors = errors
        self.permanent = all(e.permanent for e in errors)


def run(cfg: FetchConfig) -> None:
    """The pod's work: dataset i of the Indexed Job ($JOB_COMPLETION_INDEX), else every one."""
    names = claim.units_of_index(cfg.datasets, claim.completion_index(), what="datasets")
    for outcome in fetch(cfg, _LogProgress(), names):
        log.info("%s: %s, %d files fetched, %d present%s", outcome.name, outcome.state, outcome.files,
                 outcome.present, "".join(f"; {n}" for n in outcome.notes))


class _LogProgress(Progress):
    """Pods: a log line per tenth of a dataset's bytes."""

    def begin(self, name, files, total):
        self.total, self.done, self.next = max(total, 1), 0, 0.1
        log.info("%s: fetching %d files, %d bytes", name, files, total)

    def advance(self, name, nbytes):
        self.done += nbytes
        if self.done / self.total >= self.next:
            log.info("%s: %.0f%% of %d bytes", name, 100 * self.done / self.total, self.total)
            self.next += 0.1
