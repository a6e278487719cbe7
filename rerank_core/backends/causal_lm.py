"""A causal language model as a pointwise reranker: the prompt asks whether the document meets the
query, and the next-token logits of the answer tokens give the score (Qwen3-Reranker,
bge-reranker-v2-gemma and their kind)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rerank_core.backends.batching import Tokenized, on_device, pad_rows
from rerank_core.backends.limits import check_max_length
from rerank_core.backends.local import LocalModelBackend, Pairs
from rerank_core.backends.prompts import Prompt, answer_scores
from rerank_core.config import CausalLMConfig, ConfigError, is_local_path
from rerank_core.types import sigmoid

if TYPE_CHECKING:
    import numpy as np
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


class CausalLMBackend(LocalModelBackend):
    """A ``transformers`` causal LM loaded from a Hugging Face id or a local directory.

    Each pair becomes ``config.template`` with the instruction, query and document filled in,
    tokenized as the model's card tokenizes it (``rerank_core.backends.prompts.Prompt``). Raw
    score: the logit of ``yes_token`` minus that of ``no_token`` at the prompt's last position
    (relevance: P(yes) of the softmax over the two, the sigmoid of the raw score), or with no
    ``no_token`` the logit of ``yes_token`` alone (relevance: its sigmoid).

    Only the document is truncated: the prompt around it (template, instruction, query) is kept
    whole and the document's tokens are cut so that the prompt fits ``max_length``. A query too
    long to leave room for any document is refused (``InvalidRequest``). Prompts are left-padded
    (the answer is read at the last position) and batched by length under the token budget.
    """

    config: CausalLMConfig

    def __init__(self, name: str, config: CausalLMConfig) -> None:
        super().__init__(name, config)
        from transformers import AutoModelForCausalLM, AutoTokenizer

        local = is_local_path(config.model)
        self.tokenizer: PreTrainedTokenizerBase = AutoTokenizer.from_pretrained(
            config.model, trust_remote_code=config.trust_remote_code, local_files_only=local
        )
        self.model: PreTrainedModel = self.load_model(
            lambda: AutoModelForCausalLM.from_pretrained(
                config.model,
                dtype=self.torch_dtype(),
                trust_remote_code=config.trust_remote_code,
                local_files_only=local,
            ).to(self.device)
        )
        self.yes_id = self._token_id("yes_token", config.yes_token)
        no_token = config.no_token
        self.no_id = self._token_id("no_token", no_token) if no_token is not None else None
        check_max_length(name, config.max_length, config.max_length, self.model.config)
        pad = self.tokenizer.pad_token_id
        self.pad_id: int = pad if pad is not None else self.tokenizer.eos_token_id or 0
        bos = self.tokenizer.bos_token_id
        if config.prepend_bos and bos is None:
            raise ConfigError(
                f"backends.{name}.prepend_bos: the tokenizer of {config.model!r} has no BOS token",
                field="prepend_bos",
            )
        self._bos: list[int] = [bos] if config.prepend_bos and bos is not None else []
        self.prompt = Prompt(
            name, self.tokenizer, config.template, config.instruction, self._bos, config.max_length
        )

    def _token_id(self, field: str, token: str) -> int:
        ids = self._encode(token)
        if len(ids) != 1:
            raise ConfigError(
                f"backends.{self.name}.{field}: {token!r} is {len(ids)} tokens for the tokenizer "
                f"of {self.config.model!r}; the answer must be exactly one token",
                field=field,
            )
        return ids[0]

    def _encode(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def prompt_ids(self, query: str, document: str) -> list[int]:
        """The token ids of one pair's prompt, the document cut so that it fits ``max_length``."""
        return self.prompt.ids(query, document)

    def tokenize(self, pairs: Pairs) -> Tokenized:
        """Each pair's prompt as token ids (``prompt_ids``)."""
        prompts = [self.prompt_ids(query, document) for query, document in pairs]
        return Tokenized({"input_ids": prompts}, [len(p) for p in prompts])

    def collate(self, tokenized: Tokenized, items: list[int]) -> dict[str, np.ndarray]:
        """Prompts left-padded (the answer is read at the last position), with positions that
        count from each prompt's first real token, so padding does not shift them."""
        rows = [tokenized.columns["input_ids"][i] for i in items]
        mask = pad_rows([[1] * len(r) for r in rows], 0, "left", self.shape_multiple)
        return {
            "input_ids": pad_rows(rows, self.pad_id, "left", self.shape_multiple),
            "attention_mask": mask,
            "position_ids": (mask.cumsum(axis=1) - 1).clip(min=0),
        }

    def forward_batch(self, features: dict[str, np.ndarray]) -> list[float]:
        """The yes-minus-no logit at each prompt's last position."""
        import torch

        inputs = on_device(features, self.device)
        logits: torch.Tensor = self.model(**inputs, logits_to_keep=1).logits[:, -1, :]
        raw = answer_scores(logits, self.yes_id, self.no_id)
        return raw.cpu().tolist()

    def to_relevance(self, raw: float) -> float:
        return sigmoid(raw)
