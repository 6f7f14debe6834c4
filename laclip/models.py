"""laclip's own open_clip architectures (model_configs/, such as the demo's `laclip-tiny`) and the
user's ($LACLIP_MODEL_CONFIGS), registered with open_clip by an explicit call: training and
evaluation both call `register()` before they create or load a model by name.
"""

from __future__ import annotations

import os
from pathlib import Path

CONFIG_DIR = Path(__file__).parent / "model_configs"
MODEL_CONFIGS_ENV = "LACLIP_MODEL_CONFIGS"  # extra open_clip config folders/files, os.pathsep-separated
_registered: set[str] = set()


def register() -> None:
    """Add model_configs/ and every folder or file in $LACLIP_MODEL_CONFIGS to open_clip's registry,
    each once per process (open_clip rescans every folder it holds on each addition)."""
    import open_clip

    extra = filter(None, os.environ.get(MODEL_CONFIGS_ENV, "").split(os.pathsep))
    for path in (str(CONFIG_DIR), *extra):
        if path not in _registered:
            open_clip.add_model_config(path)
            _registered.add(path)
