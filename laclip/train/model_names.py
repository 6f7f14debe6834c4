"""Check an open_clip model name without importing torch (the CLI runs without it).

open_clip keeps one JSON per architecture in its package; laclip adds its own in
model_configs/ (laclip.models). When open_clip is not installed the name is checked at run time instead.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from laclip.errors import UsageError
from laclip.models import CONFIG_DIR as OWN


def known_models() -> list[str] | None:
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        return None
    folders = [Path(p) / "model_configs" for p in spec.submodule_search_locations] + [OWN]
    return sorted({f.stem for d in folders if d.is_dir() for f in d.glob("*.json")})


def check_model_name(name: str) -> str:
    known = known_models()
    if known is None or name in known:
        return name
    stem = name.lower().split("-")[0]
    near = [m for m in known if m.lower().startswith(stem)][:8]
    raise UsageError(f"unknown model {name!r}: not an open_clip model config"
                     + (f" (similar: {', '.join(near)})" if near else "") + "; laclip-tiny is the demo's tiny model")
