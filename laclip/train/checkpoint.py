"""Step checkpoints under `checkpoints/<run>/`: atomic, last K kept, newest complete one resumed.

A checkpoint is a torch file holding `state_dict` (what open_clip loads), `optimizer`,
`scaler`, `step`, `total_steps`, `data` (loader position) and `config` (TrainConfig as a dict,
whose `model` names the open_clip model). Writes go to a local temp file first, then a rename
(local store) or a create-only upload (gs://), so a reader never sees half a file. A file
cut short anyway (a disk filling up, a copy interrupted) fails to load and is skipped; a store
that fails (an outage, refused credentials) is an error, never a reason to start the run over.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import tempfile
import zipfile
from pathlib import Path

import torch

from laclip import layout
from laclip.errors import AlreadyExists, DataError, LeaseHeld, NotFound, StorageError, StoreFull, UsageError
from laclip.storage.base import Store
from laclip.storage.faults import os_fault
from laclip.storage.local import FILE_MODE

log = logging.getLogger("laclip.train")
# What torch.load raises for a truncated or corrupt file (OSError: EINVAL for some cut files).
# StorageError is none of these: the store failing is not the file being broken.
LOAD_ERRORS = (RuntimeError, EOFError, OSError, ValueError, UnicodeDecodeError, pickle.UnpicklingError,
               zipfile.BadZipFile)


run_folder = layout.run_folder
step_path = layout.checkpoint
list_steps = layout.checkpoint_steps


def save(store: Store, run: str, step: int, payload: dict, keep_last: int, replaceable: list[str] = ()) -> str:
    """Write step_<step>.pt atomically, then delete all but the newest `keep_last`.

    A checkpoint already at this step is replaced only when it is one the run skipped as
    unreadable at resume (`replaceable`); any other is another process's, and is never
    silently overwritten."""
    path = step_path(run, step)
    local = store.local_path(path)
    folder = local.parent if local is not None else Path(tempfile.gettempdir())
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".step_{step}.", suffix=".tmp")
        os.fchmod(fd, FILE_MODE)  # mkstemp's 0600 would keep a pod's other user and colleagues out
        os.close(fd)
    except OSError as exc:  # a read-only disk, no permission: one line, permanent
        raise os_fault(exc, "write checkpoint", store.url_of(path)) from None
    try:
        _write(payload, tmp, store.url_of(path))
        if local is not None:
            if local.exists():
                _may_replace(store, path, replaceable)
            try:
                os.replace(tmp, local)
            except OSError as exc:
                raise os_fault(exc, "write checkpoint", store.url_of(path)) from None
        else:
            try:
                store.upload_file(tmp, path, create_only=True)
            except AlreadyExists:
                _may_replace(store, path, replaceable)
                store.upload_file(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    for _, old in list_steps(store, run)[:-keep_last]:
        store.delete(old)
    return path


def _write(payload: dict, tmp: str, where: str) -> None:
    """torch.save to a local temp file, fsynced; a full disk is one line naming the file, not torch's
    C++ stream error, and permanent (retrying on the same node fills the same disk). torch writes
    through our file object, so the OS's own error (ENOSPC, EROFS...) is the cause of its RuntimeError."""
    try:
        with open(tmp, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
    except (OSError, RuntimeError) as exc:
        cause = _os_cause(exc)
        if cause is not None:
            raise os_fault(cause, "write checkpoint", where) from None
        full = "No space left" in str(exc) or "file write failed" in str(exc) or _nearly_full(tmp)
        if full:
            raise StoreFull(f"cannot write checkpoint {where}: No space left on device (in {os.path.dirname(tmp)})") \
                from None
        raise StorageError(f"cannot write checkpoint {where}: {' '.join(str(exc).split())[:300]}") from None


def _os_cause(exc: BaseException) -> OSError | None:
    """The OSError behind an error (torch's RuntimeError keeps the file object's as its context)."""
    seen = 0
    while exc is not None and seen < 8:
        if isinstance(exc, OSError) and exc.errno is not None:
            return exc
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return None


def _nearly_full(path: str) -> bool:
    try:
        st = os.statvfs(os.path.dirname(path) or ".")
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < (1 << 20)


def _may_replace(store: Store, path: str, replaceable) -> None:
    if path not in replaceable:
        raise LeaseHeld(f"checkpoint {store.url_of(path)} already exists and this run did not skip it as "
                        "unreadable: another process writes this run; not replacing it")
    log.warning("checkpoint %s was unreadable at resume: replacing it with this run's state", store.url_of(path))


def load(store: Store, path: str) -> dict:
    """Load one checkpoint (raises on a truncated or corrupt file)."""
    local = store.local_path(path)
    if local is not None:
        if not store.exists(path):
            what = "is a folder, not a checkpoint file" if local.is_dir() else "does not exist"
            raise NotFound(f"checkpoint {store.url_of(path)} {what}")
        try:  # opened here: a file we may not read is a store fault, not a broken checkpoint
            f = open(local, "rb")
        except OSError as exc:
            raise os_fault(exc, "read checkpoint", store.url_of(path)) from None
        with f:
            return torch.load(f, map_location="cpu", weights_only=True)
    with tempfile.TemporaryDirectory() as tmp:
        dest = Path(tmp) / "ckpt.pt"
        store.download_file(path, dest)
        return torch.load(dest, map_location="cpu", weights_only=True)


def load_latest(store: Store, run: str, broken: list | None = None) -> tuple[str, dict] | None:
    """The newest checkpoint that loads whole; broken ones are logged, skipped and added to `broken`.
    None when the run has no checkpoint. A StorageError propagates (the pod fails and is restarted),
    and so does a run whose every checkpoint is broken: starting at step 0 would overwrite them."""
    steps = list_steps(store, run)
    for _, path in reversed(steps):
        try:
            return path, load(store, path)
        except StorageError:
            raise
        except LOAD_ERRORS as exc:
            log.warning("skipping unreadable checkpoint %s (%s: %s)", store.url_of(path), type(exc).__name__, exc)
            if broken is not None:
                broken.append(path)
    if steps:
        raise DataError(f"none of the {len(steps)} checkpoints in {store.url_of(run_folder(run))}/ loads "
                        "(see the warnings above): delete them to start the run over, or use another run id")
    return None


def check_compatible(ckpt_config: dict, config: dict, keys, where: str) -> None:
    diffs = [f"{k}: checkpoint has {ckpt_config.get(k)!r}, this run asks for {config.get(k)!r}"
             for k in keys if ckpt_config.get(k) != config.get(k)]
    if diffs:
        raise UsageError(f"cannot resume from {where}: incompatible config ({'; '.join(diffs)}); "
                         "start a new run id (and --resume only from a compatible checkpoint)")


def write_run_config(store: Store, run: str, config: dict, keys) -> None:
    """The run record (checkpoints/<run>/config.json), written once; a later start must agree with it on
    `keys` (the trainer claims its run through laclip.train.inputs.claim_run, which compares the run's whole
    identity)."""
    from laclip import claim

    path = layout.run_record(run)
    if not claim.write_once(store, path, json.dumps(config, indent=2, sort_keys=True) + "\n"):
        check_compatible(claim.read_record(store, path) or {}, config, keys, store.url_of(path))


def local_dir_config(name: str, dest: str | Path, extra: dict | None = None) -> Path:
    """An open_clip `local-dir:` folder holding only open_clip_config.json for model `name` (laclip-tiny
    included): `--model local-dir:DEST` then builds it anywhere open_clip does, open_clip's own
    trainer too (randomly initialised, since the folder has no weights)."""
    import open_clip

    from laclip.models import register

    register()  # laclip-tiny and the user's configs, in this process

    cfg = open_clip.get_model_config(name)
    if cfg is None:
        raise UsageError(f"unknown open_clip model {name!r}")
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    size = cfg["vision_cfg"].get("image_size", 224)
    meta = {"model_cfg": cfg, "preprocess_cfg": {"size": size, "mean": list(open_clip.OPENAI_DATASET_MEAN),
                                                  "std": list(open_clip.OPENAI_DATASET_STD)}, **(extra or {})}
    (dest / "open_clip_config.json").write_text(json.dumps(meta, indent=2))
    return dest


def export_local_dir(store: Store, path: str, dest: str | Path) -> Path:
    """Write an open_clip `local-dir:` folder: open_clip_config.json + open_clip_pytorch_model.bin."""
    ckpt = load(store, path)
    dest = local_dir_config(ckpt["config"]["model"], dest,
                            {"laclip": {"source": store.url_of(path), "step": ckpt["step"]}})
    torch.save(ckpt["state_dict"], dest / "open_clip_pytorch_model.bin")
    return dest
