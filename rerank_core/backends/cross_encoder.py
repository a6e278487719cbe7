"""A sentence-transformers cross-encoder in this process: (query, document) pairs in, logits out."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from rerank_core.backends.batching import Tokenized, pad_columns
from rerank_core.backends.calibration import calibration_pairs
from rerank_core.backends.limits import check_max_length, check_runtime
from rerank_core.backends.local import LocalModelBackend, Pairs
from rerank_core.backends.runtimes import load_runtime, model_output
from rerank_core.backends.tokens import TokenEncoder
from rerank_core.config import ConfigError, CrossEncoderConfig, is_local_path
from rerank_core.types import clamp01, sigmoid

if TYPE_CHECKING:
    import numpy as np
    from sentence_transformers import CrossEncoder


class CrossEncoderBackend(LocalModelBackend):
    """A ``sentence_transformers.CrossEncoder`` loaded from a Hugging Face id or a local directory.

    Raw scores are the model's logits with no activation: for a one-label model its logit, for a
    two-label model the positive (index 1) minus the negative (index 0) logit. ``to_relevance`` maps
    them into [0, 1] per ``config.activation``:

    - "sigmoid": the logistic function of the raw score;
    - "softmax" (two-label models only): the positive class's softmax probability, which for two
      classes equals the sigmoid of the positive-minus-negative logit, i.e. of the raw score;
    - "model": the activation the model's configuration names. Sigmoid for a one-label model that
      names none or the identity (raw logits are not a relevance in [0, 1]), the softmax above for a
      two-label model, otherwise the named activation clamped into [0, 1].

    With ``runtime`` onnx or openvino the forward pass runs in that runtime on the model's export
    (``rerank_core.backends.runtimes``); tokenization, batching and activation stay the same.
    """

    config: CrossEncoderConfig

    def __init__(self, name: str, config: CrossEncoderConfig) -> None:
        super().__init__(name, config)
        from sentence_transformers import CrossEncoder

        self.model: CrossEncoder = self.load_model(
            lambda: CrossEncoder(
                config.model,
                device=self.device,
                max_length=config.max_length,
                trust_remote_code=config.trust_remote_code,
                # A local directory needs nothing from the Hub, not even its model card.
                local_files_only=is_local_path(config.model),
                model_kwargs={"dtype": self.torch_dtype()},
            )
        )
        tokenizer = self.model.tokenizer
        self._pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self._pad_side = "left" if tokenizer.padding_side == "left" else "right"
        check_max_length(name, config.max_length, self.model.max_seq_length, self.model.config)
        self._encode = TokenEncoder(tokenizer, self.model.max_seq_length)
        self.num_labels = self.model.num_labels
        if self.num_labels not in (1, 2):
            raise ConfigError(
                f"backends.{name}.model: {config.model!r} has {self.num_labels} labels; a reranker "
                "needs one (a relevance logit) or two (not relevant, relevant)",
                field="model",
            )
        self._relevance = self._relevance_function()
        if config.runtime != "torch":
            check_runtime(name, config, self.model.config)
            sample = [("a short query", "a short document"), ("another query", "a document")]
            calibration = calibration_pairs(name, config.calibration_file)
            self.exported = load_runtime(
                name, self.model, config.model, config, "scores", sample, calibration
            )

    def _relevance_function(self) -> Callable[[float], float]:
        import torch

        activation = self.config.activation
        if activation == "softmax" and self.num_labels != 2:
            raise ConfigError(
                f"backends.{self.name}.activation: 'softmax' needs a two-label model; "
                f"{self.config.model!r} has one label",
                field="activation",
            )
        if activation != "model" or self.num_labels == 2:
            return sigmoid
        configured = self.model.activation_fn
        if configured is None or isinstance(configured, torch.nn.Sigmoid | torch.nn.Identity):
            return sigmoid

        def apply_configured(raw: float) -> float:
            return clamp01(float(configured(torch.tensor([raw]))[0]))

        return apply_configured

    def tokenize(self, pairs: Pairs) -> Tokenized:
        """Each pair tokenized once as the model's pair template has it, truncated (longest
        first) to ``max_length`` tokens."""
        if not pairs:
            return Tokenized({}, [])
        columns = self._encode([q for q, _ in pairs], [d for _, d in pairs])
        return Tokenized(columns, [len(ids) for ids in columns["input_ids"]])

    def collate(self, tokenized: Tokenized, items: list[int]) -> dict[str, np.ndarray]:
        """The items' columns padded as the tokenizer pads: ``input_ids`` with its pad token,
        the other columns with 0."""
        return pad_columns(
            tokenized.columns,
            items,
            self._pad_id,
            self._pad_side,  # type: ignore[arg-type]
            self.shape_multiple,
        )

    def forward_batch(self, features: Mapping[str, np.ndarray]) -> list[float]:
        """The model's raw logits for one padded batch."""
        logits = model_output(self.exported, self.model, features, self.device, "scores")
        if logits.ndim == 2:
            logits = logits[:, 1] - logits[:, 0] if logits.shape[1] == 2 else logits[:, 0]
        return logits.cpu().tolist()

    def to_relevance(self, raw: float) -> float:
        return self._relevance(raw)
