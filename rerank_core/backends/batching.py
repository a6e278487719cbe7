"""What the scoring engine does between tokenizing and the model: cut items of known token lengths
into padded batches under a token budget, pad a batch's columns into arrays, and hand those to the
model's device."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import numpy as np
    import torch

#: ``batch_cost_tokens`` of a backend built directly, by device kind, until
#: ``LocalModelBackend.measure_batch_cost`` measures it (``build_backend`` does, when the config
#: leaves it out).
DEFAULT_BATCH_COST_TOKENS = {"cpu": 64, "cuda": 2048}

#: Padded widths are rounded up to this many tokens where the runtime builds its kernels per input
#: shape (OpenVINO, and torch's bfloat16 kernels on CPU, through oneDNN): the first pass of each new
#: (rows, width) shape pays for building them, so a few widths that repeat serve faster than every
#: width the traffic brings. Elsewhere widths stay exact (1). docs/benchmarks.md has the figures.
SHAPE_MULTIPLE = 8


def round_up(width: int, multiple: int) -> int:
    """``width`` rounded up to a multiple of ``multiple``."""
    return -(-width // multiple) * multiple


@dataclass
class Tokenized:
    """A family's tokenized items (pairs, prompts or texts): each column (``input_ids``,
    ``attention_mask``, ...) as one list of token ids per item, each item's length, and whatever
    the family needs to turn the items' outputs into pair scores (``extra``)."""

    columns: dict[str, list[list[int]]]
    lengths: list[int]
    extra: Any = None


@dataclass
class Prepared:
    """Pairs made ready for the model: their tokenized items and the padded ``batches``, each (the
    indices of its items, the model's input for them)."""

    pairs: int
    tokenized: Tokenized
    batches: list[tuple[list[int], Any]] = field(default_factory=list)


def length_batches(
    lengths: Sequence[int], max_items: int, max_tokens: int, batch_cost_tokens: int
) -> list[list[int]]:
    """Indices into ``lengths`` sorted longest first and cut into batches of at most ``max_items``
    whose padded size (items x longest length) is at most ``max_tokens``, at the cuts that minimise
    the padded tokens of all batches plus ``batch_cost_tokens`` for each batch (what one more
    forward pass costs, in tokens of compute). An item longer than ``max_tokens`` on its own is a
    batch of one: it cannot be split."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i], reverse=True)
    widths = [lengths[i] for i in order]
    n = len(order)
    # cost[j]: the least cost of the first j items; start[j]: where its last batch begins.
    # Longest first, so a batch's padded width is its first item's length.
    cost = [0] * (n + 1)
    start = [0] * (n + 1)
    for j in range(1, n + 1):
        best, best_i = -1, j - 1
        for i in range(j - 1, max(j - max_items, 0) - 1, -1):
            size = (j - i) * widths[i]
            if size > max_tokens and i < j - 1:
                break  # wider and longer from here on: over the budget for every earlier i
            total = cost[i] + size + batch_cost_tokens
            if best < 0 or total <= best:  # on a tie, the fewer passes
                best, best_i = total, i
        cost[j], start[j] = best, best_i
    batches: list[list[int]] = []
    j = n
    while j > 0:
        batches.append(order[start[j] : j])
        j = start[j]
    batches.reverse()
    return batches


def pad_rows(
    rows: Sequence[Sequence[int]],
    value: int,
    side: Literal["left", "right"] = "right",
    multiple: int = 1,
) -> np.ndarray:
    """``rows`` as one int64 array as wide as the longest (rounded up to ``multiple``), padded with
    ``value`` on ``side``."""
    import numpy as np

    width = round_up(max((len(r) for r in rows), default=0), multiple)
    out = np.full((len(rows), width), value, dtype=np.int64)
    for i, row in enumerate(rows):
        if row:
            if side == "right":
                out[i, : len(row)] = row
            else:
                out[i, width - len(row) :] = row
    return out


def pad_columns(
    columns: Mapping[str, Sequence[Sequence[int]]],
    items: Sequence[int],
    pad_id: int,
    side: Literal["left", "right"] = "right",
    multiple: int = 1,
) -> dict[str, np.ndarray]:
    """The rows of ``items`` in each column padded into one array (``pad_rows``), as a tokenizer
    pads them: ``input_ids`` with ``pad_id``, every other column (attention mask, token types)
    with 0."""
    return {
        key: pad_rows([rows[i] for i in items], pad_id if key == "input_ids" else 0, side, multiple)
        for key, rows in columns.items()
    }


def on_device(features: Mapping[str, np.ndarray], device: str) -> dict[str, torch.Tensor]:
    """A padded batch's arrays as torch tensors on ``device``."""
    import torch

    return {key: torch.from_numpy(value).to(device) for key, value in features.items()}
