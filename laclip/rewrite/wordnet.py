"""WordNet for the eda engine's synonym replacement and random insertion, found where it is.

Two places hold a WordNet 3.0 database nltk's reader can open:

1. nltk's own data (`python -m nltk.downloader wordnet`, where a network is at hand);
2. a plain WordNet database folder: Debian's and Ubuntu's `wordnet-base` package
   (`apt-get install wordnet-base`: /usr/share/wordnet, no network but the package mirror),
   or any folder named by $LACLIP_WORDNET. Those folders lack the `lexnames` table that nltk
   reads at start-up (Debian's libwordnet compiles it in), so laclip stages an nltk-shaped
   folder in its cache: links to the database files plus `lexnames` written from the fixed
   table of WordNet 3.0's 45 lexicographer files (wndb(5WN), lexnames(5WN)); nltk opens no file
   that resolves outside the corpus folder nor a hard link, so the database files are copied.

`synonyms()` gives a cached lookup or None; `operations_here()` the EDA operations this
machine can run. No network access, ever.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Callable

OPERATIONS = ("replace", "insert", "swap", "delete")  # EDA: synonym replacement, random insertion, swap, deletion
NEEDS_WORDNET = ("replace", "insert")
SYSTEM_FOLDERS = ("/usr/share/wordnet",)  # Debian/Ubuntu wordnet-base
HOW = ("install WordNet 3.0: `apt-get install wordnet-base` (Debian/Ubuntu), or `python -m nltk.downloader "
       "wordnet`, or set LACLIP_WORDNET to a WordNet database folder")

# WordNet 3.0's lexicographer files: number, name; the syntactic category follows from the name.
LEXNAMES = (
    "adj.all adj.pert adv.all noun.Tops noun.act noun.animal noun.artifact noun.attribute noun.body noun.cognition "
    "noun.communication noun.event noun.feeling noun.food noun.group noun.location noun.motive noun.object "
    "noun.person noun.phenomenon noun.plant noun.possession noun.process noun.quantity noun.relation noun.shape "
    "noun.state noun.substance noun.time verb.body verb.change verb.cognition verb.communication verb.competition "
    "verb.consumption verb.contact verb.creation verb.emotion verb.motion verb.perception verb.possession "
    "verb.social verb.stative verb.weather adj.ppl"
).split()
_CATEGORY = {"noun": 1, "verb": 2, "adj": 3, "adv": 4}
_DATABASE = ("data.noun", "data.verb", "data.adj", "data.adv", "index.noun", "index.verb", "index.adj", "index.adv")


def parse_operations(value) -> tuple[str, ...]:
    """`operations` engine option ("replace,insert,swap,delete", a list, or None = all four)."""
    if value is None or value == "" or value == "all":
        return OPERATIONS
    names = [v.strip() for v in (value.split(",") if isinstance(value, str) else value) if str(v).strip()]
    unknown = [n for n in names if n not in OPERATIONS]
    if unknown or not names:
        from laclip.errors import UsageError

        raise UsageError(f"eda operations {value!r}: choose among {', '.join(OPERATIONS)} (comma-separated)")
    return tuple(op for op in OPERATIONS if op in names)


def lexnames_text() -> str:
    return "".join(f"{i:02d}\t{name}\t{_CATEGORY[name.split('.')[0]]}\n" for i, name in enumerate(LEXNAMES))


def _database_folder() -> Path | None:
    for folder in filter(None, [os.environ.get("LACLIP_WORDNET"), *SYSTEM_FOLDERS]):
        path = Path(folder).expanduser()
        if all((path / f).is_file() for f in _DATABASE):
            return path
    return None


def _staged(source: Path) -> Path:
    """An nltk-shaped copy of `source`, plus lexnames when it has none."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "laclip" / "wordnet"
    import hashlib

    folder = cache / hashlib.sha256(str(source.resolve()).encode()).hexdigest()[:12]
    folder.mkdir(parents=True, exist_ok=True)
    import shutil

    for f in source.iterdir():
        target = folder / f.name
        if not f.is_file() or target.exists() or not f.name.startswith(("data.", "index.", "cntlist", "lexnames")) \
                and not f.name.endswith(".exc"):
            continue
        # nltk refuses a symlink that resolves outside the corpus folder and any hard link: a copy (28 MB, once)
        tmp = folder / f".{f.name}.{os.getpid()}"
        shutil.copyfile(f, tmp)
        tmp.replace(target)
    if not (folder / "lexnames").exists():
        tmp = folder / f".lexnames.{os.getpid()}"
        tmp.write_text(lexnames_text())
        tmp.replace(folder / "lexnames")
    return folder


@lru_cache(maxsize=1)
def reader():
    """(an nltk WordNet reader, where it came from), or (None, why not)."""
    try:
        import nltk
        from nltk.corpus import wordnet
    except ImportError:
        return None, "nltk is not installed"
    try:
        wordnet.synsets("dog")  # nltk's own data
        return wordnet, f"nltk data, WordNet {wordnet.get_version()}"
    except (LookupError, OSError, PermissionError):
        pass
    source = _database_folder()
    if source is None:
        return None, "no WordNet database found (nltk data, $LACLIP_WORDNET, /usr/share/wordnet)"
    try:
        from nltk.corpus.reader.wordnet import WordNetCorpusReader
        from nltk.data import FileSystemPathPointer

        folder = _staged(source)
        # nltk opens corpus files only under its data roots: the staged folder and the database itself
        for root in (str(source.resolve()), str(folder)):
            if root not in nltk.data.path:
                nltk.data.path.append(root)
        import warnings

        class Reader(WordNetCorpusReader):
            def map_wn(self, version="wordnet"):
                return None  # a map onto nltk's `wordnet` corpus, for multilingual data: not used here

        with warnings.catch_warnings():  # "multilingual functions are not available": not used here
            warnings.simplefilter("ignore", UserWarning)
            wn = Reader(FileSystemPathPointer(str(folder)), None)
        wn.synsets("dog")
        return wn, f"{source}, WordNet {wn.get_version()}"
    except (OSError, LookupError, PermissionError, ValueError) as exc:
        return None, f"the WordNet database in {source} cannot be read: {exc}"


def source() -> str:
    return reader()[1]


def synonyms() -> Callable[[str], list[str]] | None:
    """A cached synonym lookup (lower-case single or multi-word lemmas, the word itself left out), or None."""
    wn = reader()[0]
    if wn is None:
        return None

    @lru_cache(maxsize=100_000)
    def lookup(word: str) -> list[str]:
        found = []
        for syn in wn.synsets(word):
            for lemma in syn.lemmas():
                name = lemma.name().replace("_", " ").lower()
                if name != word and name not in found and name.replace(" ", "").isalpha():
                    found.append(name)
        return found

    return lookup


def operations_here() -> tuple[str, ...]:
    """The EDA operations this machine can run: all four with WordNet, else swap and delete."""
    return OPERATIONS if reader()[0] is not None else tuple(op for op in OPERATIONS if op not in NEEDS_WORDNET)
