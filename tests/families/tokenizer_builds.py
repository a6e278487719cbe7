"""Tokenizers built the way the real rerankers' are: the model family's own ``transformers``
tokenizer class (which builds the real normalizer, pre-tokenizer, special tokens and pair
template) over a vocabulary trained with ``tokenizers`` on ``texts.corpus()``."""

from __future__ import annotations

import json
from typing import Any

from tests.families.texts import corpus

#: Longest input, in tokens, each tiny cross-encoder takes (its tokenizer truncates to it).
MAX_LENGTH = 128
#: Longest prompt the tiny causal LMs' positions are configured for.
CAUSAL_MAX_POSITIONS = 512


def _wordpiece_vocab(specials: list[str], size: int = 600) -> dict[str, int]:
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(vocab_size=size, special_tokens=specials, show_progress=False)
    tokenizer.train_from_iterator(corpus(), trainer)
    return tokenizer.get_vocab()


def _unigram_vocab(specials: list[str], unk: str, size: int = 400) -> list[tuple[str, float]]:
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.Unigram())
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    trainer = trainers.UnigramTrainer(
        vocab_size=size, special_tokens=specials, unk_token=unk, show_progress=False
    )
    tokenizer.train_from_iterator(corpus(), trainer)
    return [(piece, float(score)) for piece, score in json.loads(tokenizer.to_str())["model"]["vocab"]]


def _bpe(
    pre_tokenizer: Any, normalizer: Any, specials: list[str], alphabet: list[str], size: int = 700
) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """A BPE vocabulary and its merges, trained with the given normalizer and pre-tokenizer."""
    from tokenizers import Tokenizer, models, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.normalizer = normalizer
    tokenizer.pre_tokenizer = pre_tokenizer
    trainer = trainers.BpeTrainer(
        vocab_size=size, special_tokens=specials, initial_alphabet=alphabet, show_progress=False
    )
    tokenizer.train_from_iterator(corpus(), trainer)
    model = json.loads(tokenizer.to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    return model["vocab"], merges


def bert_tokenizer() -> Any:
    """BERT's WordPiece tokenizer (ELECTRA's too: transformers maps ElectraTokenizer to it)."""
    from transformers import BertTokenizer

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    return BertTokenizer(vocab=_wordpiece_vocab(specials), model_max_length=MAX_LENGTH)


def xlm_roberta_tokenizer() -> Any:
    from transformers import XLMRobertaTokenizer

    vocab = _unigram_vocab(["<s>", "<pad>", "</s>", "<unk>"], "<unk>")
    return XLMRobertaTokenizer(vocab=[*vocab, ("<mask>", 0.0)], model_max_length=MAX_LENGTH)


def deberta_v2_tokenizer() -> Any:
    from transformers import DebertaV2Tokenizer

    # deberta-v3's order: [PAD] 0, [CLS] 1, [SEP] 2, [UNK] 3, [MASK] last.
    vocab = _unigram_vocab(["[PAD]", "[CLS]", "[SEP]", "[UNK]"], "[UNK]")
    vocab = [(p, 0.0) if p in ("[PAD]", "[CLS]", "[SEP]", "[UNK]") else (p, s) for p, s in vocab]
    return DebertaV2Tokenizer(vocab=[*vocab, ("[MASK]", 0.0)], model_max_length=MAX_LENGTH)


def modernbert_tokenizer() -> Any:
    """gte-reranker-modernbert-base's kind: byte-level BPE (OLMo's) in a plain
    ``PreTrainedTokenizerFast`` with a [CLS] A [SEP] B [SEP] template and no token type ids."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = ["[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]"]
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    vocab, merges = _bpe(byte_level, normalizers.NFC(), [], pre_tokenizers.ByteLevel.alphabet())
    # ModernBERT's special tokens come after the BPE vocabulary, as in the real tokenizer.
    for token in specials:
        vocab[token] = len(vocab)
    core = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    core.normalizer = normalizers.NFC()
    core.pre_tokenizer = byte_level
    core.decoder = decoders.ByteLevel()
    core.add_special_tokens(specials)
    core.post_processor = processors.TemplateProcessing(
        single="[CLS]:0 $A:0 [SEP]:0",
        pair="[CLS]:0 $A:0 [SEP]:0 $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        pad_token="[PAD]",
        mask_token="[MASK]",
        model_input_names=["input_ids", "attention_mask"],
        model_max_length=MAX_LENGTH,
    )


def qwen3_tokenizer() -> Any:
    """Qwen3-Reranker's kind: Qwen2's byte-level BPE with its pre-tokenizer regex, the chat tokens
    special, <think> and </think> added, left padding with <|endoftext|>."""
    from tokenizers import AddedToken, Regex, normalizers, pre_tokenizers
    from transformers import Qwen2Tokenizer
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    pre = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    vocab, merges = _bpe(pre, normalizers.NFC(), [], pre_tokenizers.ByteLevel.alphabet())
    tokenizer = Qwen2Tokenizer(
        vocab=vocab,
        merges=merges,
        unk_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        padding_side="left",
        model_max_length=CAUSAL_MAX_POSITIONS,
    )
    tokenizer.add_tokens([AddedToken(t, special=True) for t in ("<|im_start|>", "<|im_end|>")])
    tokenizer.add_tokens([AddedToken(t, special=False) for t in ("<think>", "</think>")])
    return tokenizer


def gemma_tokenizer() -> Any:
    """bge-reranker-v2-gemma's kind: Gemma's SentencePiece BPE (spaces as ▁, no split at
    whitespace, byte fallback), <pad> 0, <eos> 1, <bos> 2, <unk> 3, left padding."""
    from tokenizers import normalizers, pre_tokenizers
    from transformers import GemmaTokenizer

    specials = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"]
    # Trained on ▁-words (as SentencePiece trains), so a piece may hold a newline but not span
    # two words; run, like Gemma's, on the whole text.
    pre = pre_tokenizers.Split("▁", behavior="merged_with_next")
    alphabet = sorted({c for line in corpus() for c in line.replace(" ", "▁")} | {"\n"})
    vocab, merges = _bpe(pre, normalizers.Replace(" ", "▁"), specials, alphabet)
    byte_tokens = [f"<0x{b:02X}>" for b in range(256)]
    for token in byte_tokens:
        vocab.setdefault(token, len(vocab))
    return GemmaTokenizer(
        vocab=vocab, merges=merges, padding_side="left", model_max_length=CAUSAL_MAX_POSITIONS
    )

