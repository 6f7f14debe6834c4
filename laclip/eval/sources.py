"""What an evaluation reads and the versions that enter its result identity: the checkpoint file and
the dataset's files. A file written again (a new size, modification time or GCS generation) is
another version, so nothing made from the old one is reused. No torch here.
"""

from __future__ import annotations

from laclip.errors import DataError, NotFound
from laclip.identity import listing_digest
from laclip.storage.base import Store


def checkpoint_file(cfg) -> tuple[Store, str]:
    """(store, path) of cfg's checkpoint; `.pt` may be left off the reference."""
    from laclip.storage import open_store

    store = open_store(cfg.checkpoint_root)
    path = cfg.checkpoint_path
    candidates = [path] if path.endswith(".pt") else [path + ".pt", path]
    for candidate in candidates:
        if store.exists(candidate):
            return store, candidate
    raise NotFound(f"checkpoint {store.url_of(candidates[0])} does not exist")


def checkpoint_version(cfg) -> dict:
    """The checkpoint's URL and version: a file written again under the same name is another checkpoint."""
    store, path = checkpoint_file(cfg)
    version = store.versions(path).get(path)
    if version is None:  # a result id without it would outlive the file
        raise DataError(f"checkpoint {store.url_of(path)} has no readable version (size and time or generation)")
    return {"url": store.url_of(path), "version": version}


def dataset_version(ds) -> str:
    """The dataset's files as one digest: a re-exported or re-downloaded set is another dataset."""
    prefix = ds.folder + "/" if ds.folder else ""
    return listing_digest({p[len(prefix):]: v for p, v in ds.store.versions(prefix).items()})
