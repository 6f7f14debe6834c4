"""Make a tiny, randomly initialised LLaMA checkpoint with no download, for tests and demos.

`python -m laclip.rewrite.tiny_model OUT_DIR [--root ROOT --dataset demo]` trains a byte-level
BPE tokenizer on the dataset's captions and the meta pairs, builds a small LlamaConfig and
saves both with save_pretrained, so `--engine hf --model OUT_DIR` loads it like any
checkpoint (`--marian`: a MarianMT-shaped translation model for `--engine backtranslate`).
Its rewrites are random text (most are rejected and fall back): it exercises
the whole pipeline, not the quality. `--llama-7b` builds the LLaMA-7B shape for GPU benchmarks.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def train_tokenizer(texts: list[str], vocab_size: int = 512):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<s>", "</s>", "<pad>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                   model_max_length=2048)


def make_tiny_llama(out_dir: str | Path, texts: list[str], *, hidden: int = 64, layers: int = 2, heads: int = 4,
                    vocab_size: int = 512, seed: int = 0, llama_7b: bool = False) -> Path:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    out = Path(out_dir)
    tok = train_tokenizer(texts, vocab_size)
    if llama_7b:  # the LLaMA-7B shape, random weights (only sensible on a GPU)
        cfg = LlamaConfig(vocab_size=32000, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                          num_attention_heads=32, max_position_embeddings=2048)
    else:
        cfg = LlamaConfig(vocab_size=len(tok), hidden_size=hidden, intermediate_size=hidden * 2,
                          num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=heads,
                          max_position_embeddings=1024)
    cfg.bos_token_id, cfg.eos_token_id, cfg.pad_token_id = tok.bos_token_id, tok.eos_token_id, tok.pad_token_id
    model = LlamaForCausalLM(cfg)
    if llama_7b:
        model = model.to(torch.bfloat16)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def make_tiny_marian(out_dir: str | Path, texts: list[str], *, d_model: int = 32, layers: int = 1,
                     vocab_size: int = 384, seed: int = 0) -> Path:
    """A tiny random MarianMT-shaped translation model (encoder-decoder) with a BPE tokenizer, for
    `--engine backtranslate` tests: its translations are random text, not translations."""
    import torch
    from transformers import MarianConfig, MarianMTModel

    torch.manual_seed(seed)
    out = Path(out_dir)
    tok = train_tokenizer(texts, vocab_size)
    cfg = MarianConfig(vocab_size=len(tok), d_model=d_model, encoder_layers=layers, decoder_layers=layers,
                       encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=2 * d_model,
                       decoder_ffn_dim=2 * d_model, max_position_embeddings=128, pad_token_id=tok.pad_token_id,
                       eos_token_id=tok.eos_token_id, decoder_start_token_id=tok.pad_token_id,
                       forced_eos_token_id=tok.eos_token_id)
    MarianMTModel(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return out


def corpus(store=None, dataset: str | None = None, limit: int = 5000) -> list[str]:
    """Captions to train the tokenizer on: the meta pairs, plus a dataset's captions when given."""
    from laclip.rewrite.config import BUILTIN_SOURCES
    from laclip.rewrite.prompts import INSTRUCTION, load_meta_pairs

    texts = [INSTRUCTION]
    for pairs in load_meta_pairs(list(BUILTIN_SOURCES)).values():
        texts += [f"{a} => {b}\n" for a, b in pairs]
    if store is not None and dataset:
        from laclip.data.registry import resolve_shards
        from laclip.data.shards import read_captions

        for shard in resolve_shards(store, dataset):
            texts += [c for _, c in read_captions(store, shard)]
            if len(texts) >= limit:
                break
    return texts


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m laclip.rewrite.tiny_model", description=__doc__.split("\n")[0])
    ap.add_argument("out_dir")
    ap.add_argument("--root", default=None, help="store root holding --dataset")
    ap.add_argument("--dataset", default=None, help="also train the tokenizer on this dataset's captions")
    ap.add_argument("--llama-7b", action="store_true", help="LLaMA-7B shape instead of a tiny one")
    ap.add_argument("--marian", action="store_true", help="a tiny MarianMT-shaped translation model instead "
                                                          "(for --engine backtranslate)")
    args = ap.parse_args(argv)
    store = None
    if args.dataset:
        from laclip.storage import open_store

        store = open_store(args.root)
    if args.marian:
        path = make_tiny_marian(args.out_dir, corpus(store, args.dataset))
    else:
        path = make_tiny_llama(args.out_dir, corpus(store, args.dataset), llama_7b=args.llama_7b)
    print(path)


if __name__ == "__main__":
    main()
