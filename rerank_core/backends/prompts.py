"""Prompts and answers of yes/no causal-LM rerankers, built as their model cards build them.

A token is not a character: the text before a document encoded apart from the document ends in a
lone space token where the card's tokenization has the space joined to the document's first word,
and the model then reads a different input. ``Prompt`` tokenizes a template the way its card does,
and ``answer_scores`` reads the score the card reads.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from rerank_core.errors import InvalidRequest

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedTokenizerBase

_SLOT = re.compile(r"\{(instruction|query)\}")
_DOCUMENT = "{document}"


def template_pieces(template: str | Sequence[str]) -> tuple[str, ...]:
    """A template's pieces: a string is one piece."""
    return (template,) if isinstance(template, str) else tuple(template)


class Prompt:
    """The token ids of a yes/no reranker's prompt for a (query, document) pair.

    The template's pieces are tokenized each on its own (no special tokens added) and their ids
    joined after ``bos``. A one-string template is one tokenization of the whole prompt; a card
    that tokenizes its prompt in parts is written as those parts (Qwen3-Reranker: its prefix, the
    instruction-query-document text, its suffix; bge-reranker-v2-gemma: query, separator, passage,
    separator, instruction), and gives the card's ids.

    Only the document is cut, and only when the prompt is longer than ``max_length``: the ids of
    the piece holding the document are kept from its start up to what fits, as a card truncating
    that piece does (text after the document in that piece is then tokenized apart and kept
    whole). A query that leaves no room for a document token raises ``InvalidRequest``.
    """

    def __init__(
        self,
        name: str,
        tokenizer: PreTrainedTokenizerBase,
        template: str | Sequence[str],
        instruction: str,
        bos: Sequence[int],
        max_length: int,
    ) -> None:
        self.name = name
        self.tokenizer = tokenizer
        self.instruction = instruction
        self.bos = list(bos)
        self.max_length = max_length
        pieces = template_pieces(template)
        at = next(i for i, piece in enumerate(pieces) if _DOCUMENT in piece)
        self._before, self._after = pieces[:at], pieces[at + 1 :]
        self._head, self._tail = pieces[at].split(_DOCUMENT)
        # A request's pairs share their query: its pieces are tokenized once.
        self._encode_cached = functools.lru_cache(maxsize=256)(self.encode)

    def encode(self, text: str) -> list[int]:
        """``text``'s token ids, no special tokens added."""
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def _fill(self, text: str, query: str) -> str:
        values = {"instruction": self.instruction, "query": query}
        return _SLOT.sub(lambda m: values[m.group(1)], text)

    def _lead_tokens(self, text: str, head_chars: int) -> tuple[list[int], int]:
        """``text``'s ids, and how many of them start within its first ``head_chars`` characters
        (the prompt's text before the document, which is never cut)."""
        if not self.tokenizer.is_fast:
            return self.encode(text), len(self.encode(text[:head_chars]))
        encoded = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        kept = sum(1 for start, _ in encoded["offset_mapping"] if start < head_chars)
        return list(encoded["input_ids"]), kept

    def ids(self, query: str, document: str) -> list[int]:
        """The prompt's token ids for ``query`` and ``document``, at most ``max_length``."""
        before = [i for p in self._before for i in self._encode_cached(self._fill(p, query))]
        after = [i for p in self._after for i in self._encode_cached(self._fill(p, query))]
        head, tail = self._fill(self._head, query), self._fill(self._tail, query)
        outside = len(self.bos) + len(before) + len(after)
        whole = self.encode(head + document + tail)
        if outside + len(whole) <= self.max_length:
            return self.bos + before + whole + after
        tail_ids = self.encode(tail) if tail else []
        lead, kept = self._lead_tokens(head + document, len(head))
        room = self.max_length - outside - len(tail_ids)
        if room <= kept:
            raise InvalidRequest(
                f"the query leaves no room for a document in {self.name}'s prompt of at most "
                f"{self.max_length} tokens",
                field="query",
            )
        return self.bos + before + lead[:room] + tail_ids + after


def answer_scores(logits: torch.Tensor, yes_id: int, no_id: int | None) -> torch.Tensor:
    """Raw scores from next-token ``logits`` (batch x vocabulary): the yes token's logit minus
    the no token's (whose sigmoid is P(yes) of the softmax over the two, Qwen3-Reranker's score),
    or the yes token's logit alone when ``no_id`` is None (bge-reranker-v2-gemma's score)."""
    yes = logits[:, yes_id].float()
    return yes if no_id is None else yes - logits[:, no_id].float()
