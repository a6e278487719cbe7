"""The offline benchmark cross-encoder: ms-marco-MiniLM-L-6-v2's shape, loadable, and labelled."""

from __future__ import annotations

from pathlib import Path

from rerank_tools.bench_model import build


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
