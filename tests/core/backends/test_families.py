"""Every reranker family the service supports scores as its reference implementation does, in
every runtime the service accepts for it.

The tiny models of ``tests/families.py`` stand for the real ones. References: sentence-transformers'
``CrossEncoder.predict`` for cross-encoders; for the causal LMs, the code of their model cards
(Qwen3-Reranker's and bge-reranker-v2-gemma's, transcribed below). fp32 runtimes give the
reference's order for every query and scores within 1e-4; bf16 and int8 runtimes must answer
(their agreement on real weights is ``rerank-agreement``'s job).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from rerank_core.backends import build_backend
from rerank_core.backends.causal_lm import CausalLMBackend
from rerank_core.backends.cross_encoder import CrossEncoderBackend
from rerank_core.config import CAUSAL_LM_PRESETS, CausalLMConfig, ConfigError, CrossEncoderConfig
from tests.families import (
    CAUSAL_LMS,
    CROSS_ENCODERS,
    FAMILIES,
    MAX_LENGTH,
    PAIRS,
    QUERIES,
    build_family,
    order,
)

#: Every runtime a cross-encoder is served in: (id, configuration, whether it computes in fp32).
RUNTIMES: list[tuple[str, dict[str, Any], bool]] = [
    ("torch", {}, True),
    ("torch-bf16", {"cpu_dtype": "bfloat16"}, False),
    ("onnx", {"runtime": "onnx"}, True),
    ("onnx-int8", {"runtime": "onnx", "quantization": "int8"}, False),
    ("openvino", {"runtime": "openvino"}, True),
    ("openvino-bf16", {"runtime": "openvino", "cpu_dtype": "bfloat16"}, False),
    ("openvino-int8", {"runtime": "openvino", "quantization": "int8"}, False),
    ("openvino-int8-static", {"runtime": "openvino", "quantization": "int8-static"}, False),
]
#: (family, runtime) pairs the service refuses, and what the refusal says.
REFUSED = {
    ("xlm-roberta", "openvino-int8-static"): (
        r"backends.xlm-roberta.quantization: openvino/int8-static cannot serve the xlm-roberta"
    ),
}
#: The runtimes a causal LM is served in (``causal_lm`` is torch only).
CAUSAL_RUNTIMES = [r for r in RUNTIMES if r[0] in ("torch", "torch-bf16")]
TOLERANCE = 1e-4


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """Models this small run no faster on more threads, and the runtimes' idle pools spin."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("families")


@pytest.fixture(scope="module")
def calibration(root: Path) -> Path:
    """A small int8-static calibration file of the test's own queries (fast to quantize with)."""
    path = root / "calibration.jsonl"
    path.write_text("".join(json.dumps({"query": q, "documents": list(p)}) + "\n" for q, p in QUERIES))
    return path


def model_dir(root: Path, family: str) -> Path:
    return build_family(family, root / "models")


# Cross-encoders ------------------------------------------------------------------------------


_references: dict[str, tuple[list[float], list[float]]] = {}


def reference(root: Path, family: str) -> tuple[list[float], list[float]]:
    """sentence-transformers' raw scores and relevance for ``PAIRS``: a one-label model's logit
    and its sigmoid, a two-label model's positive-minus-negative logit and softmax column 1."""
    if family not in _references:
        from sentence_transformers import CrossEncoder

        model = CrossEncoder(str(model_dir(root, family)), device="cpu", local_files_only=True)
        logits = model.predict(PAIRS, activation_fn=torch.nn.Identity(), convert_to_tensor=True)
        if logits.ndim == 2 and logits.shape[1] == 2:
            raw, relevance = logits[:, 1] - logits[:, 0], torch.softmax(logits, dim=-1)[:, 1]
        else:
            raw = logits.reshape(-1)
            relevance = torch.sigmoid(raw)
        _references[family] = (raw.tolist(), relevance.tolist())
    return _references[family]


@pytest.mark.parametrize(("runtime", "over", "fp32"), RUNTIMES, ids=[r[0] for r in RUNTIMES])
@pytest.mark.parametrize("family", CROSS_ENCODERS)
def test_a_cross_encoder_scores_as_sentence_transformers(
    root: Path, calibration: Path, family: str, runtime: str, over: dict[str, Any], fp32: bool
) -> None:
    if over.get("quantization") == "int8-static":
        over = {**over, "calibration_file": str(calibration)}
    config = CrossEncoderConfig(
        model=str(model_dir(root, family)),
        device="cpu",
        # One export per family and runtime, shared by its fp32 and bf16 variants.
        export_cache_dir=str(root / "exports" / family),
        **over,
    )
    if (family, runtime) in REFUSED:
        # Refused when the replica loads it, naming the field and the reason, before an export.
        with pytest.raises(ConfigError, match=REFUSED[family, runtime]) as info:
            build_backend(family, config)
        assert info.value.field == "quantization"
        return
    backend = build_backend(family, config)
    assert isinstance(backend, CrossEncoderBackend)
    raw = backend.score_pairs(PAIRS)
    relevance = [backend.to_relevance(r) for r in raw]
    assert len(relevance) == len(PAIRS)
    assert all(math.isfinite(r) and 0.0 <= s <= 1.0 for r, s in zip(raw, relevance, strict=True))
    if not fp32:
        return
    expected_raw, expected = reference(root, family)
    assert order(relevance) == order(expected)
    assert max(abs(a - b) for a, b in zip(relevance, expected, strict=True)) < TOLERANCE
    assert max(abs(a - b) for a, b in zip(raw, expected_raw, strict=True)) < TOLERANCE


@pytest.mark.parametrize("family", CROSS_ENCODERS)
def test_the_engine_tokenizes_as_the_transformers_call(root: Path, family: str) -> None:
    """``TokenEncoder`` (the tokenizer's Rust core, called directly) gives the columns and ids
    that ``tokenizer(queries, documents, truncation="longest_first", max_length=...)`` gives,
    pairs past ``max_length`` included, and texts alone (the bi-encoder's) too."""
    from transformers import AutoTokenizer

    from rerank_core.backends.tokens import TokenEncoder

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir(root, family)))
    long = " ".join(p for _, p in PAIRS)
    pairs = [*PAIRS, (long, "short"), ("short", long), (long, long)]
    queries, documents = [q for q, _ in pairs], [d for _, d in pairs]
    encoder = TokenEncoder(tokenizer, MAX_LENGTH)
    assert encoder._core is not None
    expected = tokenizer(queries, documents, truncation="longest_first", max_length=MAX_LENGTH)
    got = encoder(queries, documents)
    assert got == {key: expected[key] for key in expected}
    assert max(len(ids) for ids in got["input_ids"]) == MAX_LENGTH
    alone = tokenizer(documents, truncation="longest_first", max_length=MAX_LENGTH)
    assert encoder(documents) == {key: alone[key] for key in alone}
    # The transformers call after it still pads and truncates as asked: the core is a copy.
    padded = tokenizer(queries[:2], documents[:2], padding="max_length", max_length=MAX_LENGTH)
    assert all(len(ids) == MAX_LENGTH for ids in padded["input_ids"])
    assert encoder(queries, documents) == got


def test_the_tokenizers_are_built_as_the_real_ones(root: Path) -> None:
    from transformers import AutoTokenizer

    def pair(family: str) -> tuple[list[str], list[str]]:
        tokenizer = AutoTokenizer.from_pretrained(str(model_dir(root, family)))
        encoded = tokenizer("a query", "a passage")
        tokens = tokenizer.convert_ids_to_tokens(encoded["input_ids"])
        return tokens, sorted(encoded)

    with_types = ["attention_mask", "input_ids", "token_type_ids"]
    without_types = ["attention_mask", "input_ids"]
    for family in ("bert", "electra", "deberta-v2"):
        tokens, keys = pair(family)
        assert (tokens[0], tokens.count("[SEP]"), tokens[-1]) == ("[CLS]", 2, "[SEP]")
        assert keys == with_types
    tokens, keys = pair("xlm-roberta")
    assert (tokens[0], tokens.count("</s>"), tokens[-1], keys) == ("<s>", 3, "</s>", without_types)
    tokens, keys = pair("modernbert")
    assert (tokens[0], tokens.count("[SEP]"), keys) == ("[CLS]", 2, without_types)


@pytest.mark.parametrize(
    ("family", "too_long", "limit"),
    [("bert", MAX_LENGTH + 1, MAX_LENGTH), ("xlm-roberta", MAX_LENGTH + 1, MAX_LENGTH)],
)
def test_a_max_length_past_the_models_positions_is_refused_at_load(
    root: Path, family: str, too_long: int, limit: int
) -> None:
    path = str(model_dir(root, family))
    with pytest.raises(ConfigError) as info:
        build_backend(family, CrossEncoderConfig(model=path, device="cpu", max_length=too_long))
    assert info.value.field == "max_length"
    assert f"backends.{family}.max_length: {too_long}" in info.value.message
    assert f"at most {limit}" in info.value.message
    # The limit itself loads, and a document longer than it is cut, not fatal.
    backend = build_backend(family, CrossEncoderConfig(model=path, device="cpu", max_length=limit))
    assert isinstance(backend, CrossEncoderBackend)
    assert len(backend.score_pairs([("a query", " ".join(["word"] * 3 * limit))])) == 1


# Causal LMs ----------------------------------------------------------------------------------


def qwen3_card_inputs(tokenizer: Any, pairs: list[tuple[str, str]], max_length: int) -> Any:
    """Qwen3-Reranker-0.6B's model card: ``format_instruction`` and ``process_inputs``."""
    prefix = (
        "<|im_start|>system\nJudge whether the Document meets the requirements based on the Query "
        'and the Instruct provided. Note that the answer can only be "yes" or "no".<|im_end|>\n'
        "<|im_start|>user\n"
    )
    suffix = "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
    prefix_tokens = tokenizer.encode(prefix, add_special_tokens=False)
    suffix_tokens = tokenizer.encode(suffix, add_special_tokens=False)
    task = "Given a web search query, retrieve relevant passages that answer the query"
    texts = [f"<Instruct>: {task}\n<Query>: {q}\n<Document>: {d}" for q, d in pairs]
    inputs = tokenizer(
        texts,
        padding=False,
        truncation="longest_first",
        return_attention_mask=False,
        max_length=max_length - len(prefix_tokens) - len(suffix_tokens),
    )
    for i, ele in enumerate(inputs["input_ids"]):
        inputs["input_ids"][i] = prefix_tokens + ele + suffix_tokens
    return tokenizer.pad(inputs, padding=True, return_tensors="pt", max_length=max_length)


def qwen3_card_scores(model: Any, tokenizer: Any, inputs: Any) -> list[float]:
    """The card's ``compute_logits``: P(yes) of the softmax over "no" and "yes"."""
    true_id, false_id = tokenizer.convert_tokens_to_ids("yes"), tokenizer.convert_tokens_to_ids("no")
    with torch.no_grad():
        scores = model(**inputs).logits[:, -1, :]
    stacked = torch.stack([scores[:, false_id], scores[:, true_id]], dim=1)
    return torch.nn.functional.log_softmax(stacked, dim=1)[:, 1].exp().tolist()


def gemma_card_inputs(tokenizer: Any, pairs: list[tuple[str, str]], max_length: int = 1024) -> Any:
    """bge-reranker-v2-gemma's model card: ``get_inputs``."""
    prompt = (
        "Given a query A and a passage B, determine whether the passage contains an answer to the "
        "query by providing a prediction of either 'Yes' or 'No'."
    )
    sep = "\n"
    prompt_inputs = tokenizer(prompt, return_tensors=None, add_special_tokens=False)["input_ids"]
    sep_inputs = tokenizer(sep, return_tensors=None, add_special_tokens=False)["input_ids"]
    inputs = []
    for query, passage in pairs:
        query_inputs = tokenizer(
            f"A: {query}",
            return_tensors=None,
            add_special_tokens=False,
            max_length=max_length * 3 // 4,
            truncation=True,
        )
        passage_inputs = tokenizer(
            f"B: {passage}",
            return_tensors=None,
            add_special_tokens=False,
            max_length=max_length,
            truncation=True,
        )
        # The card's ``tokenizer.prepare_for_model(first, second, truncation="only_second",
        # max_length=max_length, add_special_tokens=False)``, which transformers 5 no longer has:
        # the two joined, the second cut to fit.
        first = [tokenizer.bos_token_id] + query_inputs["input_ids"]
        second = sep_inputs + passage_inputs["input_ids"]
        item = {"input_ids": first + second[: max(0, max_length - len(first))]}
        item["input_ids"] = item["input_ids"] + sep_inputs + prompt_inputs
        item["attention_mask"] = [1] * len(item["input_ids"])
        inputs.append(item)
    return tokenizer.pad(
        inputs,
        padding=True,
        max_length=max_length + len(sep_inputs) + len(prompt_inputs),
        pad_to_multiple_of=8,
        return_tensors="pt",
    )


def gemma_card_scores(model: Any, tokenizer: Any, inputs: Any) -> list[float]:
    """The card's score, the logit of "Yes", through the sigmoid FlagEmbedding normalises with."""
    yes_loc = tokenizer("Yes", add_special_tokens=False)["input_ids"][0]
    with torch.no_grad():
        scores = model(**inputs, return_dict=True).logits[:, -1, yes_loc].view(-1).float()
    return torch.sigmoid(scores).tolist()


CARDS = {
    "qwen3": (qwen3_card_inputs, qwen3_card_scores),
    "gemma": (gemma_card_inputs, gemma_card_scores),
}


def card_ids(family: str, tokenizer: Any, pair: tuple[str, str], max_length: int) -> list[int]:
    """The ids the card feeds the model for ``pair``, padding left out."""
    inputs = CARDS[family][0](tokenizer, [pair], max_length)
    return [i for i, m in zip(inputs["input_ids"][0], inputs["attention_mask"][0], strict=True) if m]


def causal_backend(root: Path, family: str, **over: Any) -> CausalLMBackend:
    entry = {**FAMILIES[family].backend, "model": str(model_dir(root, family)), "device": "cpu"}
    backend = build_backend(family, CausalLMConfig(**{**entry, **over}))
    assert isinstance(backend, CausalLMBackend)
    return backend


@pytest.mark.parametrize("family", CAUSAL_LMS)
def test_the_prompt_is_the_cards_token_for_token(root: Path, family: str) -> None:
    backend = causal_backend(root, family)
    for pair in PAIRS:
        assert backend.prompt_ids(*pair) == card_ids(family, backend.tokenizer, pair, 8192)


def test_the_qwen3_fixture_tells_a_split_prompt_from_the_cards(root: Path) -> None:
    # Encoding the text before the document apart leaves a lone space token where the card's one
    # tokenization joins the space to the document's first word: the test above would see it.
    tokenizer = causal_backend(root, "qwen3").tokenizer
    head = "<Document>:"
    for _, document in PAIRS[:3]:
        split = tokenizer.encode(head + " ", add_special_tokens=False) + tokenizer.encode(
            document, add_special_tokens=False
        )
        assert split != tokenizer.encode(f"{head} {document}", add_special_tokens=False)


def test_a_long_document_is_cut_where_the_qwen3_card_cuts_it(root: Path) -> None:
    backend = causal_backend(root, "qwen3", max_length=160)
    lengths = []
    for pair in PAIRS:
        ids = backend.prompt_ids(*pair)
        assert ids == card_ids("qwen3", backend.tokenizer, pair, 160)
        lengths.append(len(ids))
    assert max(lengths) == 160 > min(lengths)


@pytest.mark.parametrize(
    ("runtime", "over", "fp32"), CAUSAL_RUNTIMES, ids=[r[0] for r in CAUSAL_RUNTIMES]
)
@pytest.mark.parametrize("family", CAUSAL_LMS)
def test_a_causal_lm_scores_as_its_model_card(
    root: Path, family: str, runtime: str, over: dict[str, Any], fp32: bool
) -> None:
    backend = causal_backend(root, family, **over)
    raw = backend.score_pairs(PAIRS)
    relevance = [backend.to_relevance(r) for r in raw]
    assert all(math.isfinite(r) and 0.0 <= s <= 1.0 for r, s in zip(raw, relevance, strict=True))
    if not fp32:
        return
    make_inputs, scores = CARDS[family]
    expected = []
    for query, passages in QUERIES:  # one batch per query, as the cards' examples run
        pairs = [(query, p) for p in passages]
        expected += scores(backend.model, backend.tokenizer, make_inputs(backend.tokenizer, pairs, 8192))
    assert order(relevance) == order(expected)
    assert max(abs(a - b) for a, b in zip(relevance, expected, strict=True)) < TOLERANCE


def test_a_causal_lm_max_length_past_its_positions_is_refused(root: Path) -> None:
    with pytest.raises(ConfigError) as info:
        causal_backend(root, "qwen3", max_length=FAMILIES["qwen3"].backend["max_length"] + 1)
    assert info.value.field == "max_length"


def test_the_presets_tokenize_their_cards_pieces() -> None:
    assert isinstance(CAUSAL_LM_PRESETS["qwen3-reranker"]["template"], tuple)
    assert CAUSAL_LM_PRESETS["bge-reranker-v2-gemma"]["no_token"] is None
