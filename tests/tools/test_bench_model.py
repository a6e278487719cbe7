"""The offline benchmark cross-encoder: ms-marco-MiniLM-L-6-v2's shape, loadable, and labelled."""

from __future__ import annotations

from pathlib import Path

from rerank_tools.bench_model import build, build_near_free


def test_builds_a_cross_encoder_with_ms_marco_minilm_l6_compute(tmp_path: Path) -> None:
    from sentence_transformers import CrossEncoder

    output = build(tmp_path / "bench", seed=0)
    assert "SCORES ARE NOT A RANKING MODEL'S" in (output / "README.txt").read_text()

    model = CrossEncoder(str(output), device="cpu", local_files_only=True)
    config = model.model.config
    assert (config.num_hidden_layers, config.hidden_size) == (6, 384)
    assert (config.num_attention_heads, config.intermediate_size) == (12, 1536)
    assert (config.vocab_size, config.num_labels) == (30522, 1)
    assert model.max_seq_length == 512
    scores = model.predict([("a query", "a document"), ("another", "passage")])
    assert scores.shape == (2,)


def test_near_free_model_has_one_small_layer_and_the_minilm_tokenizer(tmp_path: Path) -> None:
    from sentence_transformers import CrossEncoder
    from transformers import AutoTokenizer

    output = build_near_free(tmp_path / "near-free", seed=0)
    assert "SCORES ARE NOT A RANKING MODEL'S" in (output / "README.txt").read_text()

    model = CrossEncoder(str(output), device="cpu", local_files_only=True)
    config = model.model.config
    assert (config.num_hidden_layers, config.hidden_size, config.num_labels) == (1, 32, 1)
    assert model.max_seq_length == 512
    # The real WordPiece vocabulary, so tokenizing costs what it costs with the benchmark model.
    reference = AutoTokenizer.from_pretrained(str(build(tmp_path / "bench", seed=0)))
    text = "what is the tokenizer's cost per pair"
    assert model.tokenizer(text)["input_ids"] == reference(text)["input_ids"]
    assert model.predict([("a query", "a document")]).shape == (1,)
