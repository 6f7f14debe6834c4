"""Draft a meta-pair file with a chatbot, as the paper made its ChatGPT and Bard pairs.

`python -m laclip.rewrite.draft_pairs --endpoint URL --model NAME [--style vivid|plain|careful]
 (--captions FILE | --root ROOT --dataset NAME) [-n 16] > mine.txt`

Each caption is sent to an OpenAI-compatible chat endpoint with a style instruction; the
answer goes through the same filters as a rewrite (one line, not an echo, 2+ words), and
the accepted pairs are printed in the `source => target` format. Read and edit the file,
then use it with `laclip submit rewrite --meta-pairs NAME=mine.txt --sources NAME,...`.
"""

from __future__ import annotations

import argparse
import os
import sys

from laclip.errors import LaclipError, UsageError
from laclip.rewrite.filters import check
from laclip.rewrite.prompts import SEP, clean_caption

STYLES = {
    "vivid": "Rewrite the image caption as one vivid, fluent sentence. Keep every fact, add no new objects.",
    "plain": "Rewrite the image caption as one plain sentence with different wording and word order.",
    "careful": "Rewrite the image caption with different words but exactly the same meaning. Be brief.",
}


def draft_meta_pairs(client, model: str, captions: list[str], style: str = "vivid", n: int = 16,
                     temperature: float = 0.7) -> list[tuple[str, str]]:
    """Up to n (caption, rewrite) pairs from distinct captions; rejected answers are skipped."""
    if style not in STYLES:
        raise UsageError(f"unknown style {style!r}: choose {', '.join(STYLES)}")
    pairs: list[tuple[str, str]] = []
    seen: set[str] = set()
    for raw in captions:
        cap = clean_caption(raw, 40, 300)
        if len(cap.split()) < 3 or cap.lower() in seen:
            continue
        seen.add(cap.lower())
        resp = client.chat.completions.create(
            model=model, temperature=temperature, max_tokens=77,
            messages=[{"role": "system", "content": STYLES[style] + " Answer with the sentence only."},
                      {"role": "user", "content": cap}],
        )
        text, reason = check(resp.choices[0].message.content or "", cap)
        if reason is None:
            pairs.append((cap, text))
        if len(pairs) >= n:
            break
    return pairs


def format_pairs(pairs: list[tuple[str, str]], header: str) -> str:
    return f"# {header}\n" + "".join(f"{a}{SEP}{b}\n" for a, b in pairs)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m laclip.rewrite.draft_pairs", description=__doc__.split("\n")[0])
    ap.add_argument("--endpoint", required=True, help="base URL, e.g. http://localhost:8000/v1")
    ap.add_argument("--model", required=True)
    ap.add_argument("--style", default="vivid", choices=sorted(STYLES))
    ap.add_argument("--captions", help="a text file, one caption per line")
    ap.add_argument("--root", help="store root holding --dataset")
    ap.add_argument("--dataset", help="take captions from this dataset's first shard")
    ap.add_argument("-n", type=int, default=16)
    args = ap.parse_args(argv)
    try:
        from laclip.rewrite.config import check_endpoint

        check_endpoint(args.endpoint)
        if args.captions:
            try:
                with open(args.captions, encoding="utf-8") as f:
                    captions = f.read().splitlines()
            except (OSError, UnicodeDecodeError) as exc:
                raise UsageError(f"cannot read --captions {args.captions}: {getattr(exc, 'strerror', None) or exc}") \
                    from None
        elif args.dataset:
            from laclip.data.registry import resolve_shards
            from laclip.data.shards import read_captions
            from laclip.storage import open_store

            store = open_store(args.root)
            captions = [c for _, c in read_captions(store, resolve_shards(store, args.dataset)[0])]
        else:
            raise UsageError("pass --captions FILE or --dataset NAME")
        from openai import OpenAI

        client = OpenAI(base_url=args.endpoint, api_key=os.environ.get("OPENAI_API_KEY", "unused"))
        pairs = draft_meta_pairs(client, args.model, captions, args.style, args.n)
        if len(pairs) < 3:
            raise LaclipError(f"only {len(pairs)} usable pairs came back; a source needs at least 3")
        sys.stdout.write(format_pairs(pairs, f"drafted by {args.model} ({args.style}); review before use"))
        return 0
    except LaclipError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
