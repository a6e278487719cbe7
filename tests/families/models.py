"""The tiny random models of each family, saved with their tokenizers into a directory that
sentence-transformers or ``transformers`` loads like the real model's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.families import tokenizer_builds
from tests.families.tokenizer_builds import CAUSAL_MAX_POSITIONS, MAX_LENGTH

_SEED = 19


def _save(path: Path, tokenizer: Any, model_class: str, config: Any) -> None:
    """A seeded random ``transformers.<model_class>`` of ``config`` and ``tokenizer``, saved."""
    import torch
    import transformers

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_SEED)
        model = getattr(transformers, model_class)(config).eval()
    model.save_pretrained(str(path))
    tokenizer.save_pretrained(str(path))


def _small(**over: Any) -> dict[str, Any]:
    return {
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "intermediate_size": 64,
        "initializer_range": 0.3,
        **over,
    }


def build_bert(path: Path, num_labels: int = 1) -> None:
    from transformers import BertConfig

    tokenizer = tokenizer_builds.bert_tokenizer()
    config = BertConfig(
        vocab_size=len(tokenizer), max_position_embeddings=MAX_LENGTH, num_labels=num_labels, **_small()
    )
    _save(path, tokenizer, "BertForSequenceClassification", config)


def build_electra(path: Path) -> None:
    from transformers import ElectraConfig

    tokenizer = tokenizer_builds.bert_tokenizer()
    config = ElectraConfig(
        vocab_size=len(tokenizer),
        embedding_size=16,
        max_position_embeddings=MAX_LENGTH,
        num_labels=1,
        **_small(),
    )
    _save(path, tokenizer, "ElectraForSequenceClassification", config)


def build_xlm_roberta(path: Path) -> None:
    from transformers import XLMRobertaConfig

    tokenizer = tokenizer_builds.xlm_roberta_tokenizer()
    # As bge-reranker-v2-m3's 8194 for 8192 tokens: positions start after the padding index.
    config = XLMRobertaConfig(
        vocab_size=len(tokenizer),
        max_position_embeddings=MAX_LENGTH + 2,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        type_vocab_size=1,
        num_labels=1,
        **_small(),
    )
    _save(path, tokenizer, "XLMRobertaForSequenceClassification", config)


def build_modernbert(path: Path) -> None:
    from transformers import ModernBertConfig

    tokenizer = tokenizer_builds.modernbert_tokenizer()
    vocab = tokenizer.get_vocab()
    config = ModernBertConfig(
        vocab_size=len(tokenizer),
        max_position_embeddings=8192,
        pad_token_id=vocab["[PAD]"],
        cls_token_id=vocab["[CLS]"],
        sep_token_id=vocab["[SEP]"],
        bos_token_id=vocab["[CLS]"],
        eos_token_id=vocab["[SEP]"],
        # Local attention narrower than the longer passages, so the sliding window matters.
        local_attention=16,
        global_attn_every_n_layers=2,
        num_labels=1,
        **_small(num_hidden_layers=3),
    )
    _save(path, tokenizer, "ModernBertForSequenceClassification", config)


def build_deberta_v2(path: Path) -> None:
    from transformers import DebertaV2Config

    tokenizer = tokenizer_builds.deberta_v2_tokenizer()
    # deberta-v3's (mxbai-rerank-base-v1's) configuration: relative positions in log buckets,
    # no absolute positions and no token types, so the model ignores token_type_ids.
    config = DebertaV2Config(
        vocab_size=len(tokenizer),
        max_position_embeddings=512,
        relative_attention=True,
        position_buckets=32,
        pos_att_type=["p2c", "c2p"],
        norm_rel_ebd="layer_norm",
        share_att_key=True,
        position_biased_input=False,
        type_vocab_size=0,
        pad_token_id=0,
        layer_norm_eps=1e-7,
        num_labels=1,
        **_small(),
    )
    _save(path, tokenizer, "DebertaV2ForSequenceClassification", config)


def build_qwen3(path: Path) -> None:
    from transformers import Qwen3Config

    tokenizer = tokenizer_builds.qwen3_tokenizer()
    config = Qwen3Config(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=8,
        max_position_embeddings=CAUSAL_MAX_POSITIONS,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        initializer_range=0.3,
    )
    _save(path, tokenizer, "Qwen3ForCausalLM", config)


def build_gemma(path: Path) -> None:
    from transformers import GemmaConfig

    tokenizer = tokenizer_builds.gemma_tokenizer()
    config = GemmaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=1,
        head_dim=8,
        max_position_embeddings=CAUSAL_MAX_POSITIONS,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        initializer_range=0.3,
    )
    _save(path, tokenizer, "GemmaForCausalLM", config)
