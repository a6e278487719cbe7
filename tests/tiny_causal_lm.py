"""A tiny Qwen3 causal LM that answers "yes" or "no", built offline in seconds, for tests of the
``causal_lm`` backend.

``build_tiny_causal_lm(path)`` writes a directory that ``transformers.AutoModelForCausalLM`` and
``AutoTokenizer`` load like any Hugging Face model: a two-layer Qwen3 with a word-level tokenizer
over the words of ``tests.tiny_models``' topics. It is trained for a few seeded steps, with the
prompt ``TEMPLATE``, to answer "yes" when the document is about the query's topic, so for the
queries of ``tests.tiny_models.EXAMPLES`` the relevant document scores above the others.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import TYPE_CHECKING

from tests.tiny_models import FILLER, TOPICS, _training_pairs

if TYPE_CHECKING:
    import torch

#: The prompt the model is trained on; every word of it is in the vocabulary.
TEMPLATE = "judge {instruction} query {query} document {document} answer"
INSTRUCTION = "is it relevant"
SPECIAL_TOKENS = ["<pad>", "<unk>", "<s>", "</s>"]
PROMPT_WORDS = ["judge", "query", "document", "answer", "is", "it", "relevant", "yes", "no"]
VOCAB: list[str] = list(
    dict.fromkeys(SPECIAL_TOKENS + PROMPT_WORDS + FILLER + [w for ws in TOPICS.values() for w in ws])
)
#: Longest prompt the tiny model accepts.
MAX_POSITIONS = 256

_SEED = 4321
_STEPS = 400
_BATCH = 16
_LEARNING_RATE = 3e-3


def backend_config(model_dir: Path, **overrides: object) -> dict[str, object]:
    """A ``causal_lm`` backend configuration for the tiny model (template, instruction, tokens)."""
    return {
        "type": "causal_lm",
        "model": str(model_dir),
        "template": TEMPLATE,
        "instruction": INSTRUCTION,
        "yes_token": "yes",
        "no_token": "no",
        "max_length": 128,
        "device": "cpu",
        **overrides,
    }


def _tokenizer(target: Path) -> object:
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(WordLevel({w: i for i, w in enumerate(VOCAB)}, unk_token="<unk>"))
    core.pre_tokenizer = Whitespace()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        pad_token="<pad>",
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
        padding_side="left",
        model_max_length=MAX_POSITIONS,
    )
    tokenizer.save_pretrained(str(target))
    return tokenizer


def _topic_head_start(embeddings: torch.Tensor) -> None:
    """Add one shared random direction to the embeddings of each topic's words, so a few steps
    suffice to learn "query and document are about the same topic"."""
    import torch

    with torch.no_grad():
        for words in TOPICS.values():
            direction = torch.randn(embeddings.shape[1])
            for word in words:
                embeddings[VOCAB.index(word)] += direction


def build_tiny_causal_lm(path: Path) -> Path:
    """Build and save the tiny yes/no model into ``path`` (created) and return ``path``."""
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tokenizer = _tokenizer(path)
    config = Qwen3Config(
        vocab_size=len(VOCAB),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        max_position_embeddings=MAX_POSITIONS,
        tie_word_embeddings=True,
        pad_token_id=VOCAB.index("<pad>"),
        bos_token_id=VOCAB.index("<s>"),
        eos_token_id=VOCAB.index("</s>"),
        initializer_range=0.2,
    )
    yes, no = VOCAB.index("yes"), VOCAB.index("no")
    data = _training_pairs(random.Random(_SEED), _STEPS * _BATCH)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(_SEED)
            model = Qwen3ForCausalLM(config)
            _topic_head_start(model.get_input_embeddings().weight)
            optimizer = torch.optim.AdamW(model.parameters(), lr=_LEARNING_RATE)
            model.train()
            for step in range(_STEPS):
                batch = data[step * _BATCH : (step + 1) * _BATCH]
                prompts = [
                    TEMPLATE.format(instruction=INSTRUCTION, query=q, document=d) for q, d, _ in batch
                ]
                features = tokenizer(prompts, padding=True, return_tensors="pt")  # type: ignore[operator]
                mask = features["attention_mask"]
                logits = model(
                    input_ids=features["input_ids"],
                    attention_mask=mask,
                    position_ids=(mask.cumsum(dim=1) - 1).clamp(min=0),
                    logits_to_keep=1,
                ).logits[:, -1, :]
                targets = torch.tensor([yes if label > 0.5 else no for _, _, label in batch])
                loss = torch.nn.functional.cross_entropy(logits, targets)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
    finally:
        torch.set_num_threads(threads)
    model.eval()
    model.save_pretrained(str(path))
    return path
