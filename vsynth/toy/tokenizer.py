"""A word-level offline CLIPTokenizer for the toy world.

The vocabulary is CLIP's byte-level layout (the 256 byte symbols and the same with ``</w>``, so any
text still tokenizes, character by character), plus merges built so that every toy-world word
(``world.WORDS``) becomes exactly one ``word</w>`` token, plus ``<|startoftext|>`` and ``<|endoftext|>``
(also the padding token).  Files are written by :func:`write_tokenizer_files`; no download needed.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from .world import WORDS

BOS, EOS = "<|startoftext|>", "<|endoftext|>"
MODEL_MAX_LENGTH = 77


def _bytes_to_unicode() -> dict[int, str]:
    # CLIP / GPT-2's reversible byte -> unicode table (copied to avoid importing transformers here).
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


def _bpe(word: str, ranks: dict[tuple[str, str], int]) -> tuple[str, ...]:
    """CLIP's BPE of one (byte-encoded) word."""
    parts = tuple(word[:-1]) + (word[-1] + "</w>",)
    while len(parts) > 1:
        pairs = {(a, b) for a, b in zip(parts, parts[1:])}
        best = min(pairs, key=lambda p: ranks.get(p, float("inf")))
        if best not in ranks:
            break
        merged, i = [], 0
        while i < len(parts):
            if i < len(parts) - 1 and (parts[i], parts[i + 1]) == best:
                merged.append(parts[i] + parts[i + 1])
                i += 2
            else:
                merged.append(parts[i])
                i += 1
        parts = tuple(merged)
    return parts


def build_vocab(words=WORDS) -> tuple[dict[str, int], list[tuple[str, str]]]:
    symbols = list(_bytes_to_unicode().values())
    tokens = symbols + [s + "</w>" for s in symbols]
    merges: list[tuple[str, str]] = []
    ranks: dict[tuple[str, str], int] = {}
    for word in words:
        while True:
            parts = _bpe(word, ranks)
            if len(parts) == 1:
                break
            pair = (parts[0], parts[1])  # merge left to right; ranked after every earlier merge
            ranks[pair] = len(merges)
            merges.append(pair)
            if pair[0] + pair[1] not in tokens:
                tokens.append(pair[0] + pair[1])
    tokens += [BOS, EOS]
    return {t: i for i, t in enumerate(tokens)}, merges


def write_tokenizer_files(directory: str | Path) -> Path:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    vocab, merges = build_vocab()
    (directory / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), "utf-8")
    (directory / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges), "utf-8")
    return directory


def toy_tokenizer():
    """The toy CLIPTokenizer (slow, like vsynth's loaders use)."""
    from transformers import CLIPTokenizer

    with tempfile.TemporaryDirectory() as tmp:
        write_tokenizer_files(tmp)
        return CLIPTokenizer(
            str(Path(tmp, "vocab.json")),
            str(Path(tmp, "merges.txt")),
            model_max_length=MODEL_MAX_LENGTH,
            bos_token=BOS,
            eos_token=EOS,
            pad_token=EOS,
            unk_token=EOS,
        )


def special_ids() -> tuple[int, int, int]:
    """(vocab size, bos id, eos id)."""
    vocab, _ = build_vocab()
    return len(vocab), vocab[BOS], vocab[EOS]
