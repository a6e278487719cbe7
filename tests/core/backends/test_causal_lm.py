"""The causal-LM (yes/no) backend on a tiny Qwen3 trained in a fixture: order, prompt, truncation,
padding and configuration."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from rerank_core.backends import build_backend
from rerank_core.backends.causal_lm import CausalLMBackend
from rerank_core.config import CAUSAL_LM_PRESETS, CausalLMConfig, ConfigError, load_config
from rerank_core.errors import InvalidRequest
from tests.tiny_causal_lm import INSTRUCTION, backend_config
from tests.tiny_models import EXAMPLES, FILLER


def make_backend(model_dir: Path, **over: Any) -> CausalLMBackend:
    backend = build_backend("lm", CausalLMConfig(**backend_config(model_dir, **over)))
    assert isinstance(backend, CausalLMBackend)
    return backend


@pytest.fixture(scope="module")
def backend(tiny_causal_lm_dir: Path) -> CausalLMBackend:
    return make_backend(tiny_causal_lm_dir)


@pytest.mark.parametrize("example", EXAMPLES, ids=[e.query for e in EXAMPLES])
async def test_the_relevant_document_ranks_first(backend: CausalLMBackend, example: Any) -> None:
    documents = [*example.irrelevant, example.relevant]
    ranked = await backend.rerank(example.query, documents)
    assert ranked[0].index == len(documents) - 1
    assert [s.index for s in ranked] != list(range(len(documents)))
    for s in ranked:
        assert 0.0 <= s.score <= 1.0
        assert s.raw_score is not None


def test_the_prompt_is_the_template_filled_in(backend: CausalLMBackend) -> None:
    ids = backend.prompt_ids("cat purr", "the kitten")
    text = backend.tokenizer.decode(ids)
    assert text == f"judge {INSTRUCTION} query cat purr document the kitten answer"


def test_a_long_document_is_cut_and_the_instruction_survives(tiny_causal_lm_dir: Path) -> None:
    short = make_backend(tiny_causal_lm_dir, max_length=20)
    long_document = " ".join(FILLER[i % len(FILLER)] for i in range(500))
    ids = short.prompt_ids("cat purr", long_document)
    assert len(ids) == 20
    words = short.tokenizer.decode(ids).split()
    assert words[:8] == ["judge", *INSTRUCTION.split(), "query", "cat", "purr", "document"]
    assert words[-1] == "answer"
    assert words[8:-1] == long_document.split()[: 20 - 9]


def test_a_query_that_leaves_no_room_for_the_document_is_refused(tiny_causal_lm_dir: Path) -> None:
    short = make_backend(tiny_causal_lm_dir, max_length=20)
    with pytest.raises(InvalidRequest) as info:
        short.prompt_ids(" ".join(["cat"] * 30), "the kitten")
    assert info.value.field == "query"


async def test_left_padding_does_not_change_a_score(backend: CausalLMBackend) -> None:
    pair = ("cat purr", "the kitten will purr")
    alone = backend.score_pairs([pair])[0]
    padded = backend.score_pairs([pair, ("cat", " ".join(["the cat"] * 30))])[0]
    assert padded == pytest.approx(alone, abs=1e-4)


def test_a_preset_fills_the_prompt_and_keeps_a_given_instruction() -> None:
    config = CausalLMConfig(model="Qwen/Qwen3-Reranker-0.6B", preset="qwen3-reranker", instruction="x")
    preset = CAUSAL_LM_PRESETS["qwen3-reranker"]
    assert config.template == preset["template"]
    assert (config.yes_token, config.no_token, config.instruction) == ("yes", "no", "x")
    gemma = CausalLMConfig(model="BAAI/bge-reranker-v2-gemma", preset="bge-reranker-v2-gemma")
    assert gemma.prepend_bos
    assert gemma.instruction == CAUSAL_LM_PRESETS["bge-reranker-v2-gemma"]["instruction"]


@pytest.mark.parametrize(
    ("entry", "field"),
    [
        ({"preset": "qwen3-reranker", "yes_token": "Yes"}, "yes_token"),
        ({"preset": "no-such-model"}, "preset"),
        ({"template": "{query} only", "yes_token": "yes", "no_token": "no"}, "{document}"),
        ({"yes_token": "yes", "no_token": "no"}, "template"),
        ({"preset": "qwen3-reranker", "runtime": "onnx"}, "runtime"),
    ],
)
def test_a_bad_entry_is_refused_naming_the_field(entry: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config({"backends": {"lm": {"type": "causal_lm", "model": "m", **entry}}})
    assert "backends.lm" in str(info.value)
    assert field in str(info.value)


def test_an_answer_token_of_several_tokens_is_refused(tiny_causal_lm_dir: Path) -> None:
    with pytest.raises(ConfigError) as info:
        make_backend(tiny_causal_lm_dir, yes_token="yes no")
    assert info.value.field == "yes_token"
