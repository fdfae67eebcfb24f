"""A tiny BERT with random weights, saved the way ``save_pretrained`` saves real ones, so that
tests exercise newsrec's real loading code (config, weights, fast tokenizer) in seconds."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

_BUILT: dict[str, str] = {}

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def world_words(root: str | Path) -> list[str]:
    """The distinct lower-case words of a MIND root's titles and abstracts."""
    words: set[str] = set()
    for news in Path(root).glob("*/news.tsv"):
        for line in news.read_text(encoding="utf-8").splitlines():
            cols = line.split("\t")
            words.update(re.findall(r"\w+", (cols[3] + " " + cols[4]).lower()))
    return sorted(words)


def save_tiny_bert(directory: str | Path, words: list[str], *, layers: int = 2, hidden: int = 16, seed: int = 0) -> str:
    """A 2-layer, 16-d BERT over ``words`` (+ specials, letters and punctuation), saved with its
    fast tokenizer to ``directory``; returns the path."""
    import inspect

    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    letters = list("abcdefghijklmnopqrstuvwxyz0123456789æøå.,!?;:'\"-")
    vocab = list(dict.fromkeys(SPECIALS + letters + [f"##{c}" for c in letters] + words))
    (directory / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    if "vocab" in inspect.signature(BertTokenizerFast.__init__).parameters:  # transformers >= 5
        tokenizer = BertTokenizerFast(vocab={w: i for i, w in enumerate(vocab)}, do_lower_case=True)
    else:
        tokenizer = BertTokenizerFast(vocab_file=str(directory / "vocab.txt"), do_lower_case=True)
    assert len(tokenizer) == len(vocab)
    tokenizer.save_pretrained(directory)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=2 * hidden,
        max_position_embeddings=64,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    torch.manual_seed(seed)
    BertModel(config).save_pretrained(directory)
    return str(directory)


def tiny_bert_for(root: str | Path) -> str:
    """A tiny BERT over the words of ``root`` (built once per process)."""
    key = str(Path(root).resolve())
    if key not in _BUILT:
        _BUILT[key] = save_tiny_bert(Path(tempfile.mkdtemp(prefix="newsrec-tiny-bert-")), world_words(root))
    return _BUILT[key]
