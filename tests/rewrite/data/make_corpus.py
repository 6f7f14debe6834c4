"""How smollm2_rewrites.jsonl was made: real SmolLM2-135M-Instruct rewrites with laclip's own prompts.

`python tests/rewrite/data/make_corpus.py MODEL_DIR OUT.jsonl [SEED [FORMATS]]` (MODEL_DIR from
`laclip rewrites get-smollm2`; the corpus holds seed 0 in both formats and seed 1 in the completion
format, ids ending `-s1`). Captions: 40 drawn by the demo's own generator (laclip.data.synth, seed 22) and 36 web
alt-texts written for this corpus; each rewritten once per built-in source (chatgpt, bard, coco,
human) in two prompt formats: laclip's completion prompt as the hf engine sends it, and the same
prompt as the user turn of the model's chat template. Sampling is laclip's default (temperature 0.9,
top-p 0.95, 77 new tokens, stop at newline). Each row records the raw first line of the output; the
`label` field was added by hand afterwards (faithful, false, off_topic, echo, near_echo), and
`split` (dev or held_out) by caption: the held-out captions were labelled and scored only after the
check was written.
"""

from __future__ import annotations

import json
import os
import random
import sys

WEB = [
    "a golden retriever catching a frisbee in the park",
    "Woman in a red dress walking down a city street",
    "two boys playing basketball on an outdoor court",
    "fresh strawberries in a white bowl on a wooden table",
    "Aerial view of a small town surrounded by green fields",
    "black cat sitting on a windowsill",
    "vintage blue pickup truck parked in front of a barn",
    "Man riding a bicycle across a bridge at sunset",
    "close up of a yellow sunflower",
    "Kitchen interior with stainless steel appliances",
    "three horses grazing in a meadow",
    "snow covered mountains under a clear sky",
    "a plate of sushi with chopsticks",
    "little girl blowing bubbles in the backyard",
    "Old stone church with a tall bell tower",
    "laptop and coffee mug on a desk",
    "Sailboat on a calm lake in the morning",
    "elderly couple holding hands on a park bench",
    "Group of friends having a picnic on the grass",
    "red double decker bus on a London street",
    "Modern living room with a grey sofa and large windows",
    "a brown bear fishing in a river",
    "hand holding a smartphone with a blank screen",
    "Autumn leaves on a forest path",
    "chef slicing vegetables in a restaurant kitchen",
    "Wedding rings on a white rose",
    "a lighthouse on a rocky coast",
    "Kids in school uniforms walking to school",
    "green parrot perched on a branch",
    "Christmas tree with lights and presents underneath",
    "surfer riding a big wave",
    "Stack of old books on a shelf",
    "Beautiful young woman smiling portrait stock photo",
    "Vector illustration of a cartoon rocket",
    "Wooden chair isolated on white background",
    "family of four walking on the beach",
]
SOURCES = ("chatgpt", "bard", "coco", "human")


def captions() -> list[tuple[str, str]]:
    from laclip.data.synth import draw_sample

    rng = random.Random(22)
    demo = []
    while len(demo) < 40:
        c = draw_sample(rng).caption
        if c not in demo:
            demo.append(c)
    return [("demo", c) for c in demo] + [("web", c) for c in WEB]


def main(model_dir: str, out_path: str, seed: int = 0, formats: str = "completion,chat") -> None:
    from laclip.rewrite.config import Sampling
    from laclip.rewrite.engines.base import Request
    from laclip.rewrite.engines.hf import HFEngine
    from laclip.rewrite.filters import continuation
    from laclip.rewrite.prompts import PromptBuilder, load_meta_pairs

    engine = HFEngine(model_dir, Sampling())
    builder = PromptBuilder(load_meta_pairs(list(SOURCES)), "corpus", seed)
    tag = f"-s{seed}" if seed else ""
    done = set()
    if os.path.exists(out_path):  # resume: rows already written are kept
        with open(out_path, encoding="utf-8") as f:
            done = {json.loads(line)["id"] for line in f if line.strip()}
    numbered = list(enumerate(captions()))
    demo, web = [x for x in numbered if x[1][0] == "demo"], [x for x in numbered if x[1][0] == "web"]
    order = [x for pair in zip(demo, web) for x in pair] + demo[len(web):]  # both styles from the start
    rows, requests = [], []
    for n, (style, caption) in order:
        split = "held_out" if n % 3 == 2 else "dev"
        for source in SOURCES:
            prompt, _, h = builder.build("00000", f"{n:04d}", source, caption)
            chat = engine.tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                                        add_generation_prompt=True)
            for fmt, text in (("completion", prompt), ("chat", chat)):
                if fmt not in formats.split(",") or f"{n:04d}-{source}-{fmt}{tag}" in done:
                    continue
                rows.append({"id": f"{n:04d}-{source}-{fmt}{tag}", "style": style, "split": split, "source": source,
                             "format": fmt, "caption": caption})
                requests.append(Request(text, caption, h))
    with open(out_path, "a", encoding="utf-8") as f:
        for b in range(0, len(requests), 16):
            outs = engine(requests[b:b + 16])
            for row, text in zip(rows[b:b + 16], outs):
                row["output"] = text.split("\n", 1)[0]
                row["rewrite"] = continuation(text)
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
            f.flush()
            print(f"{min(b + 16, len(requests))}/{len(requests)}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], *(int(a) if a.isdigit() else a for a in sys.argv[3:]))
