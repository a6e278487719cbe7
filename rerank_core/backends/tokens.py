"""Texts and pairs into token ids through a tokenizer's Rust core, as the ``transformers`` call
makes them but without its per-call Python work (the scoring engine's tokenizer thread calls it
once per batch)."""

from __future__ import annotations

import copy
from typing import Any

#: The columns a ``transformers`` tokenizer returns, by the ``tokenizers.Encoding`` field that
#: holds each.
_FIELDS = {"input_ids": "ids", "token_type_ids": "type_ids", "attention_mask": "attention_mask"}


class TokenEncoder:
    """``tokenizer(texts)`` or ``tokenizer(firsts, seconds)`` with ``truncation="longest_first"``
    and ``max_length``: the same columns of the same ids, from a private copy of the fast
    tokenizer's Rust core (``encode_batch_fast``: no character offsets), truncation set once.

    A tokenizer without a Rust core, or one whose model takes a column other than input ids,
    token type ids and attention mask, is called through ``transformers`` as before.
    """

    def __init__(self, tokenizer: Any, max_length: int) -> None:
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.columns: list[str] = list(tokenizer.model_input_names)
        backend = getattr(tokenizer, "backend_tokenizer", None) if tokenizer.is_fast else None
        self._core: Any = None
        if backend is not None and set(self.columns) <= set(_FIELDS):
            # A copy: the transformers call sets truncation and padding on the shared core.
            core = copy.deepcopy(backend)
            core.no_padding()
            core.enable_truncation(
                max_length, strategy="longest_first", direction=tokenizer.truncation_side
            )
            self._core = core

    def __call__(self, firsts: list[str], seconds: list[str] | None = None) -> dict[str, list[list[int]]]:
        """Each text (or pair) as token ids, one list per column."""
        if self._core is None:
            encoded = self.tokenizer(
                firsts, seconds, truncation="longest_first", max_length=self.max_length
            )
            return {key: encoded[key] for key in encoded}
        inputs = firsts if seconds is None else list(zip(firsts, seconds, strict=True))
        encodings = self._core.encode_batch_fast(inputs)
        return {
            column: [getattr(e, _FIELDS[column]) for e in encodings] for column in self.columns
        }
