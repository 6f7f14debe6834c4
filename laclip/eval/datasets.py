"""Evaluation sets in CLIP_benchmark's webdataset layout, read from any Store (folder or gs://).

    <dataset>/classnames.txt                          one class name per line, label i = line i
    <dataset>/zeroshot_classification_templates.txt   optional, "{c}" marks the class name
    <dataset>/dataset_type.txt                         optional: classification (default) | retrieval
    <dataset>/<split>/nshards.txt                      number of shards N
    <dataset>/<split>/0.tar ... N-1.tar                key.jpg|png|webp, key.cls, optional key.txt

A dataset is a name (`datasets/<name>/` in the root store) or a URL/path of its own folder.
"""

from __future__ import annotations

import io
import tarfile
import zlib
from contextlib import closing
from dataclasses import dataclass
from functools import cached_property
from importlib import resources
from itertools import islice
from typing import Iterator

from laclip.errors import DataError, NotFound, UsageError
from laclip.storage import open_store
from laclip.storage.base import Store, join

IMAGE_EXTS = ("jpg", "jpeg", "png", "webp")
BUILTIN_CLASSNAMES = {"imagenet1k": "imagenet1k_classnames.txt"}
IMAGENET_NAMES = ("imagenet1k", "imagenet-1k", "imagenet")
BUILTIN_TEMPLATES = {"clip80": "clip_imagenet_templates.txt"}


def builtin_lines(filename: str) -> list[str]:
    text = resources.files("laclip.eval").joinpath("data", filename).read_text("utf-8")
    return [line.strip() for line in text.splitlines() if line.strip()]


@dataclass
class Sample:
    index: int  # (shard << 32) | position in the shard: sorts into the split's order
    key: str
    image: bytes
    label: int | None
    captions: list[str]


class EvalDataset:
    def __init__(self, name: str, store: Store, folder: str):
        self.name, self.store, self.folder = name, store, folder

    def url(self, *parts: str) -> str:
        return self.store.url_of(join(self.folder, *parts))

    @cached_property
    def files(self) -> set[str]:
        return set(self.store.list(self.folder + "/" if self.folder else ""))

    def _path(self, *parts: str) -> str:
        return join(self.folder, *parts)

    def has_file(self, name: str) -> bool:
        return self._path(name) in self.files

    def has_split(self, split: str) -> bool:
        prefix = self._path(split) + "/"
        return any(f.startswith(prefix) for f in self.files)

    @cached_property
    def kind(self) -> str:
        path = self._path("dataset_type.txt")
        return self.store.read_text(path).strip().lower() if path in self.files else "classification"

    def nshards(self, split: str) -> int:
        path = self._path(split, "nshards.txt")
        if path not in self.files:
            have = sorted({f[len(self.folder):].strip("/").split("/")[0] for f in self.files
                           if f.endswith("nshards.txt")})
            raise DataError(
                f"{self.url(split, 'nshards.txt')} is missing: a CLIP_benchmark split needs <split>/nshards.txt "
                f"next to its shards 0.tar..N-1.tar (splits with one: {', '.join(have) or 'none'})"
            )
        text = self.store.read_text(path).strip()
        if not text.isdigit() or int(text) < 1:
            raise DataError(f"{self.url(split, 'nshards.txt')} should hold a positive shard count, not {text!r}")
        return int(text)

    def shard_paths(self, split: str) -> list[str]:
        paths = [self._path(split, f"{i}.tar") for i in range(self.nshards(split))]
        missing = [p for p in paths if p not in self.files]
        if missing:
            raise DataError(f"{self.url(split, 'nshards.txt')} promises {len(paths)} shards but "
                            f"{self.store.url_of(missing[0])} is missing ({len(missing)} missing in all)")
        return paths

    def captioned(self, split: str) -> bool:
        """Whether the split's first sample has a .txt caption. CLIP_benchmark's sets caption every
        sample or none, so one sample tells whether retrieval can run, without reading the split."""
        with closing(_iter_tar_groups(self.store, self.shard_paths(split)[0])) as groups:
            return any("txt" in parts for _, parts in islice(groups, 1))

    # -- class names and prompt templates ------------------------------------------------
    def classnames(self, option: str = "auto") -> list[str]:
        """`auto`: the dataset's classnames.txt, else ImageNet-1k's when the name says so."""
        path = self._path("classnames.txt")
        if option == "auto":
            if path in self.files:
                names = _lines(self.store.read_text(path))
                source = self.url("classnames.txt")
            elif self.name in IMAGENET_NAMES:
                names, source = builtin_lines(BUILTIN_CLASSNAMES["imagenet1k"]), "the shipped ImageNet-1k list"
            else:
                raise DataError(f"{self.url('classnames.txt')} is missing: zero-shot classification needs class "
                                "names (one per line), or pass --classnames imagenet1k|PATH")
        else:
            names, source = _read_option(option, BUILTIN_CLASSNAMES, "class-name")
        if not names:
            raise DataError(f"class-name file {source} is empty")
        if self.name in IMAGENET_NAMES and len(names) != 1000:
            raise DataError(f"class-name file {source} has {len(names)} names; ImageNet-1k has 1000 classes")
        return names

    def templates(self, option: str = "auto") -> list[str]:
        """`auto`: the dataset's template file if any, else CLIP's 80 ImageNet templates."""
        path = self._path("zeroshot_classification_templates.txt")
        if option in ("auto", "dataset"):
            if path in self.files:
                found, source = _lines(self.store.read_text(path)), self.url("zeroshot_classification_templates.txt")
            elif option == "dataset":
                raise DataError(f"{self.url('zeroshot_classification_templates.txt')} is missing")
            else:
                found, source = builtin_lines(BUILTIN_TEMPLATES["clip80"]), "CLIP's 80 templates"
        else:
            found, source = _read_option(option, BUILTIN_TEMPLATES, "template")
        bad = [t for t in found if "{c}" not in t]
        if not found or bad:
            raise DataError(f"template file {source}: every template must contain {{c}} for the class name"
                            + (f", not {bad[0]!r}" if bad else " (it is empty)"))
        return found

    # -- samples ---------------------------------------------------------------------------
    def iter_samples(self, split: str, worker: int = 0, workers: int = 1) -> Iterator[Sample]:
        """Samples of `split` in order, or worker w's share of them (of n workers).

        With at least n shards a worker reads only its own shards (shard i % n == w), so no
        byte is fetched twice; with fewer, every worker reads every shard and decodes every
        n-th sample. `Sample.index` sorts the union back into the split's order."""
        paths = self.shard_paths(split)
        by_shard = len(paths) >= workers
        running = 0
        for shard_no, path in enumerate(paths):
            if by_shard and shard_no % workers != worker:
                continue
            count = 0
            for key, parts in _iter_tar_groups(self.store, path):
                image_ext = next((e for e in IMAGE_EXTS if e in parts), None)
                if image_ext is None:
                    raise DataError(f"sample {key!r} in {self.store.url_of(path)} has no image "
                                    f"({'/'.join(IMAGE_EXTS)}); it has {', '.join(sorted(parts))}")
                if by_shard or running % workers == worker:
                    yield self._sample((shard_no << 32) | count, key, parts, image_ext, path)
                count += 1
                running += 1
            if count == 0:
                raise DataError(f"shard {self.store.url_of(path)} is empty: it holds no samples")

    def _sample(self, index: int, key: str, parts: dict[str, bytes], image_ext: str, path: str) -> Sample:
        label = None
        if "cls" in parts:
            text = parts["cls"].decode().strip()
            if not text.lstrip("-").isdigit():
                raise DataError(f"{key}.cls in {self.store.url_of(path)} is not an integer: {text!r}")
            label = int(text)
        captions = _lines(parts["txt"].decode("utf-8")) if "txt" in parts else []
        return Sample(index, key, parts[image_ext], label, captions)


def reshard(store: Store, split_dir: str, shards: int) -> None:
    """Re-cut a one-tar split `<split>/0.tar` into `shards` tars (round-robin by key) and update
    nshards.txt: more shards let loader workers (ours and webdataset's) read in parallel."""
    members = []
    with tarfile.open(fileobj=io.BytesIO(store.read_bytes(f"{split_dir}/0.tar"))) as tar:
        for m in tar.getmembers():
            members.append((m, tar.extractfile(m).read()))
    keys = sorted({m.name.split(".")[0] for m, _ in members})
    for i in range(shards):
        mine = set(keys[i::shards])
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as out:
            for m, data in members:
                if m.name.split(".")[0] in mine:
                    out.addfile(m, io.BytesIO(data))
        store.write_bytes(f"{split_dir}/{i}.tar", buf.getvalue())
    store.write_text(f"{split_dir}/nshards.txt", f"{shards}\n")


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def _read_option(option: str, builtin: dict[str, str], what: str) -> tuple[list[str], str]:
    if option in builtin:
        return builtin_lines(builtin[option]), f"the shipped {option} list"
    store, path = _split_url(option)
    try:
        return _lines(store.read_text(path)), store.url_of(path)
    except (NotFound, FileNotFoundError):
        raise DataError(f"{what} file {option!r} not found") from None


def _split_url(ref: str) -> tuple[Store, str]:
    scheme, sep, rest = ref.partition("://")
    body = rest if sep else ref
    folder, _, name = body.rstrip("/").rpartition("/")
    return open_store((scheme + sep + folder) if sep else (folder or ".")), name


def _iter_tar_groups(store: Store, path: str) -> Iterator[tuple[str, dict[str, bytes]]]:
    """(key, {ext: bytes}) for consecutive members sharing a key, as webdataset groups them."""
    try:
        stream = store.open_read(path)
    except (NotFound, FileNotFoundError):
        raise DataError(f"shard {store.url_of(path)} is missing") from None
    key, parts = None, {}
    try:
        with stream, tarfile.open(fileobj=stream, mode="r|*") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                base = member.name.rsplit("/", 1)[-1]
                stem, dot, ext = base.partition(".")
                if not dot:
                    continue
                full_key = member.name[: len(member.name) - len(base)] + stem
                if full_key != key and parts:
                    yield key, parts
                    parts = {}
                key = full_key
                parts[ext.lower()] = tar.extractfile(member).read()
    except (tarfile.TarError, EOFError, zlib.error) as exc:
        raise DataError(f"shard {store.url_of(path)} is not a readable tar file (corrupt or truncated): {exc}") \
            from None
    if parts:
        yield key, parts


def open_eval_dataset(root_store: Store, ref: str) -> EvalDataset:
    """A dataset by name (`datasets/<name>/` in the root store) or by URL/path of its folder."""
    if "://" in ref or ref.startswith(("/", "./", "../")):
        ds = EvalDataset(ref.rstrip("/").rsplit("/", 1)[-1], open_store(ref.rstrip("/")), "")
        if not ds.files:
            raise DataError(f"evaluation dataset {ref!r} is empty or does not exist")
        return ds
    from laclip.data.registry import check_built, check_name, discover

    try:
        check_name(ref)
    except UsageError as exc:
        raise UsageError(f"unknown evaluation dataset: {exc}") from None
    check_built(root_store, ref)
    from laclip import layout

    ds = EvalDataset(ref, root_store, layout.dataset_folder(ref))
    if not any(f.endswith("nshards.txt") for f in ds.files):
        from laclip.eval.suites import fetch_hint

        known = sorted(n for n, info in discover(root_store).items() if info.kind == "clip_benchmark")
        fetching = layout.dataset_source(ref) in ds.files
        hint = "run `laclip data synth` for demo-eval" if ref == "demo-eval" else (
            fetch_hint(ref, root_store.url) or
            "mirror it in CLIP_benchmark's webdataset layout (clip_benchmark_export_wds) there")
        if fetching:
            hint = f"its fetch from the hub has not finished; {hint}"
        raise DataError(
            f"unknown evaluation dataset {ref!r}: {root_store.url_of(ds.folder)}/ has no <split>/nshards.txt; "
            f"{hint}. Evaluation datasets in this store: {', '.join(known) or 'none'}"
        )
    return ds
