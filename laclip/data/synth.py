"""The demo dataset: procedurally drawn shapes with varied natural captions.

`datasets/demo/` holds img2dataset-style training shards; `datasets/demo-eval/` holds a
labelled evaluation set in CLIP_benchmark's webdataset layout (train and test splits,
classnames.txt, zeroshot_classification_templates.txt). The class of an image is the
shape it shows; captions also describe colour, size, count, position and background, in
many phrasings, some terse and noisy like web alt-text, so that a tiny CLIP has something
to learn and caption rewriting has something to add. Everything is drawn from one seed.
"""

from __future__ import annotations

import io
import json
import math
import random
import tarfile
from dataclasses import dataclass

from PIL import Image, ImageDraw

from laclip import layout
from laclip.data.registry import SYNTH_MARKER, SYNTH_SETTINGS
from laclip.data.shards import shard_id, write_shard
from laclip.errors import DataError
from laclip.storage.base import Store, join

SHAPES = ["circle", "square", "triangle", "star", "diamond", "cross", "hexagon", "ring"]
COLOURS = {
    "red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 80, 220), "yellow": (235, 210, 40),
    "purple": (140, 60, 180), "orange": (245, 140, 30), "black": (20, 20, 20), "white": (245, 245, 245),
}
BACKGROUNDS = {
    "grey": (128, 128, 128), "light blue": (170, 200, 235), "beige": (230, 215, 180),
    "dark": (45, 45, 55), "pink": (240, 190, 200), "mint": (190, 235, 210),
}
# Shape radius as a share of the image. Tiny shapes (0.10-0.16: 6-10 px at 64 px, 1-3 px after the
# ResNet stem's 4x downsampling) left a circle, a hexagon and a ring nearly alike: the CLIP it trained
# stayed near 30 % zero-shot (BENCHMARKS.md). DRAW_VERSION is part of the build settings.
SIZES = {"medium": 0.26, "large": 0.34}
DRAW_VERSION = 2
NUMBER_WORDS = {1: "one", 2: "two", 3: "three", 4: "four"}
EVAL_TEMPLATES = [
    "a photo of a {c}.", "a drawing of a {c}.", "a picture of a {c}.", "an image of a {c}.",
    "a {c} shape.", "a simple {c}.", "a rendering of a {c}.", "a small {c}.", "a big {c}.",
    "a colorful {c}.",
]

_TEMPLATES = [
    "{a_size} {colour} {shape} on a {bg} background",
    "{count_words} {colour} {shapes} {where}",
    "{colour} {shape}",
    "{a_colour} {shape} {where} of the picture",
    "a picture of {count_words} {shapes}",
    "image of {a_size} {shape}, {colour}, {bg} backdrop",
    "stock photo {colour} {shape} {n_id}",
    "{shapes} ({colour}) - illustration",
    "there is {a_size} {colour} {shape} {where}",
    "{bg} background with {count_words} {size} {colour} {shapes}",
    "simple {shape} icon in {colour}",
    "{count_words} {shapes} drawn in {colour} over {bg}",
    "IMG_{n_id} {shape}",
    "minimal {colour} {shape} art",
    "{a_colour} {shape} sitting {where}",
    # captions without colour or background, as many web captions are: the shape is what they say
    "a picture of a {shape}", "{a_size} {shape}", "a {shape} {where}", "{count_words} {shapes}",
    "drawing of a {shape}", "a {shape} shape", "{shape} icon", "photo of {count_words} {shapes}",
    "the {shape}", "a {size} {shape} on a plain background",
]


def _plural(shape: str) -> str:
    return shape + "es" if shape.endswith("s") else shape + "s"


def _article(word: str) -> str:
    return ("an " if word[0] in "aeiou" else "a ") + word


def _polygon(cx, cy, r, n, phase=0.0, inner=None):
    pts = []
    steps = n * 2 if inner else n
    for i in range(steps):
        rad = (inner if inner and i % 2 else 1.0) * r
        ang = phase + 2 * math.pi * i / steps
        pts.append((cx + rad * math.cos(ang), cy + rad * math.sin(ang)))
    return pts


def draw_shape(draw: ImageDraw.ImageDraw, shape: str, cx: float, cy: float, r: float, fill, rot: float) -> None:
    if shape == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
    elif shape == "ring":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], outline=fill, width=max(2, int(r * 0.35)))
    elif shape == "square":
        draw.polygon(_polygon(cx, cy, r * 1.15, 4, math.pi / 4 + rot * 0.3), fill=fill)
    elif shape == "diamond":
        draw.polygon(_polygon(cx, cy, r * 1.2, 4, rot * 0.2), fill=fill)
    elif shape == "triangle":
        draw.polygon(_polygon(cx, cy, r * 1.2, 3, -math.pi / 2 + rot * 0.3), fill=fill)
    elif shape == "star":
        draw.polygon(_polygon(cx, cy, r * 1.25, 5, -math.pi / 2 + rot, inner=0.45), fill=fill)
    elif shape == "hexagon":
        draw.polygon(_polygon(cx, cy, r * 1.1, 6, rot), fill=fill)
    elif shape == "cross":
        w = r * 0.38
        draw.rectangle([cx - r, cy - w, cx + r, cy + w], fill=fill)
        draw.rectangle([cx - w, cy - r, cx + w, cy + r], fill=fill)
    else:  # pragma: no cover - SHAPES is closed
        raise ValueError(shape)


@dataclass
class Drawn:
    jpg: bytes
    shape: str
    caption: str


def _where(x: float, y: float) -> str:
    h = "left" if x < 0.4 else "right" if x > 0.6 else "center"
    v = "top" if y < 0.4 else "bottom" if y > 0.6 else "middle"
    if h == "center" and v == "middle":
        return "in the middle"
    if h == "center":
        return f"at the {v}"
    if v == "middle":
        return f"on the {h}"
    return f"in the {v} {h}"


def draw_sample(rng: random.Random, size: int = 64, shape: str | None = None) -> Drawn:
    shape = shape or rng.choice(SHAPES)
    colour = rng.choice(list(COLOURS))
    bg = rng.choice([b for b in BACKGROUNDS if BACKGROUNDS[b] != COLOURS[colour]])
    size_word = rng.choice(list(SIZES))
    count = rng.choices([1, 2, 3, 4], weights=[6, 2, 1, 1])[0]
    if size_word == "large":
        count = 1
    img = Image.new("RGB", (size, size), BACKGROUNDS[bg])
    draw = ImageDraw.Draw(img)
    r = SIZES[size_word] * size * rng.uniform(0.85, 1.15)
    jitter = lambda c: tuple(max(0, min(255, v + rng.randint(-18, 18))) for v in c)  # noqa: E731
    cx0 = rng.uniform(r, size - r) / size
    cy0 = rng.uniform(r, size - r) / size
    for i in range(count):
        cx, cy = (cx0, cy0) if i == 0 else (rng.uniform(r, size - r) / size, rng.uniform(r, size - r) / size)
        draw_shape(draw, shape, cx * size, cy * size, r, jitter(COLOURS[colour]), rng.uniform(0, math.pi))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=90)
    words = {
        "shape": shape, "shapes": _plural(shape) if count > 1 else shape, "colour": colour,
        "a_colour": _article(colour), "size": size_word, "a_size": _article(size_word), "bg": bg,
        "count_words": NUMBER_WORDS[count] if count > 1 else "a single", "where": _where(cx0, cy0),
        "n_id": rng.randint(1000, 9999),
    }
    caption = rng.choice(_TEMPLATES).format(**words)
    if rng.random() < 0.5:
        caption = caption[0].upper() + caption[1:]
    return Drawn(buf.getvalue(), shape, caption)


# synth.json is written last: its presence means the dataset and its eval set are whole; synth-build.json
# first: what a resumed build must match (and, without the marker, an unfinished build: registry.check_built).
MARKER, SETTINGS = SYNTH_MARKER, SYNTH_SETTINGS


def is_complete(store: Store, name: str = "demo") -> bool:
    """The dataset and its eval set are whole and drawn by this version of the code."""
    path = join(layout.dataset_folder(name), MARKER)
    if not store.exists(path):
        return False
    try:
        return json.loads(store.read_text(path)).get("draw_version", 1) == DRAW_VERSION
    except ValueError:
        return False


def synth_demo(
    store: Store,
    *,
    name: str = "demo",
    shards: int = 8,
    per_shard: int = 512,
    eval_train_per_class: int = 40,
    eval_test_per_class: int = 40,
    image_size: int = 64,
    seed: int = 0,
    overwrite: bool = False,
    progress=None,
) -> dict:
    """Write the demo training shards and its evaluation set; returns a summary.

    Every object is drawn from the seed alone and written atomically, so a build that was
    interrupted resumes: objects already there are whole and kept. Resuming with other
    settings is refused, since the kept objects would not match them. `overwrite` first
    deletes both folders, so no shard of an earlier, larger build survives.
    """
    folder, eval_folder = layout.dataset_folder(name), layout.dataset_folder(f"{name}-eval")
    if overwrite:
        for path in store.list(folder + "/") + store.list(eval_folder + "/"):
            store.delete(path)
    settings = {"seed": seed, "shards": shards, "per_shard": per_shard, "image_size": image_size,
                "eval_train_per_class": eval_train_per_class, "eval_test_per_class": eval_test_per_class,
                "draw_version": DRAW_VERSION}
    settings_path = f"{folder}/{SETTINGS}"
    if store.exists(settings_path):
        earlier = json.loads(store.read_text(settings_path))
        if earlier != settings:
            differ = ", ".join(f"{k} {earlier.get(k)} (now {v})" for k, v in settings.items() if earlier.get(k) != v)
            raise DataError(
                f"{store.url_of(folder)}/ was built with other settings ({differ}): kept objects would not "
                f"match them; run `laclip data synth` with the earlier settings, or with --overwrite to rebuild"
            )
    else:
        store.write_text(settings_path, json.dumps(settings, indent=2) + "\n")
    for i in range(shards):
        sid = shard_id(i)
        if store.exists(f"{folder}/{sid}.parquet"):  # the parquet is written last: the shard is whole
            if progress:
                progress()
            continue
        rng = random.Random(f"{seed}:{name}:train:{i}")
        samples = []
        for j in range(per_shard):
            d = draw_sample(rng, image_size)
            samples.append({
                "key": f"{i:05d}{j:04d}", "caption": d.caption, "jpg": d.jpg,
                "width": image_size, "height": image_size, "json": {"shape": d.shape},
            })
        write_shard(store, folder, i, samples, create_only=False)  # replaces a tar left without its parquet
        if progress:
            progress()
    for split, per_class in (("train", eval_train_per_class), ("test", eval_test_per_class)):
        if not store.exists(join(eval_folder, split, "nshards.txt")):  # written after the split's tar
            rng = random.Random(f"{seed}:{name}:eval:{split}")
            _write_cb_split(store, eval_folder, split, rng, per_class, image_size)
    store.write_text(join(eval_folder, "classnames.txt"), "\n".join(SHAPES) + "\n")
    store.write_text(join(eval_folder, "zeroshot_classification_templates.txt"), "\n".join(EVAL_TEMPLATES) + "\n")
    summary = {
        "dataset": folder, "shards": shards, "samples": shards * per_shard,
        "eval": eval_folder, "classes": len(SHAPES),
        "eval_train": eval_train_per_class * len(SHAPES), "eval_test": eval_test_per_class * len(SHAPES),
    }
    params = {"seed": seed, "per_shard": per_shard, "image_size": image_size, "draw_version": DRAW_VERSION}
    store.write_text(f"{folder}/{MARKER}", json.dumps({**summary, **params}, indent=2) + "\n")
    return summary


def _write_cb_split(store, folder, split, rng, per_class, image_size) -> None:
    """One CLIP_benchmark split: `<split>/0.tar` with key.jpg/.cls/.txt, and nshards.txt."""
    buf = io.BytesIO()
    order = [c for c in range(len(SHAPES)) for _ in range(per_class)]
    rng.shuffle(order)
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for n, cls in enumerate(order):
            d = draw_sample(rng, image_size, SHAPES[cls])
            for ext, data in (("jpg", d.jpg), ("cls", str(cls).encode()), ("txt", d.caption.encode())):
                info = tarfile.TarInfo(f"s{n:06d}.{ext}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    store.write_bytes(join(folder, split, "0.tar"), buf.getvalue())
    store.write_text(join(folder, split, "nshards.txt"), "1\n")
