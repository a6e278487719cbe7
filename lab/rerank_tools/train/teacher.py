"""A bi-encoder as the teacher of the distillation stage: it scores (query, passage) pairs by the
cosine of their embeddings, each distinct text encoded once."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from rerank_tools.train.data import PairTeacher

if TYPE_CHECKING:
    import torch


def bi_encoder_embedder(source: str, device: str, progress: bool) -> Callable[[Sequence[str]], torch.Tensor]:
    """The normalised embeddings of texts by the sentence-transformers model at ``source`` (a
    directory or a Hugging Face id), as one tensor: the teacher's and ``rerank-candidates``'."""
    from pathlib import Path

    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(source, device=device, local_files_only=Path(source).is_dir())

    def embed(texts: Sequence[str]) -> torch.Tensor:
        return model.encode(
            list(texts),
            batch_size=64,
            normalize_embeddings=True,
            convert_to_tensor=True,
            show_progress_bar=progress,
        )

    return embed


def bi_encoder_teacher(source: str, device: str, scale: float, progress: bool) -> PairTeacher:
    """A ``PairTeacher`` returning ``scale`` x cosine(query, passage) of the sentence-transformers
    model at ``source`` (a directory or a Hugging Face id). The scale spreads the cosines
    (about 0 to 0.8 on MS MARCO) over the range of a cross-encoder's logits."""
    embed = bi_encoder_embedder(source, device, progress)

    def score(pairs: Sequence[tuple[str, str]]) -> list[float]:
        texts = list(dict.fromkeys(t for pair in pairs for t in pair))
        embeddings = embed(texts)
        row = {text: i for i, text in enumerate(texts)}
        q = embeddings[[row[query] for query, _ in pairs]]
        d = embeddings[[row[text] for _, text in pairs]]
        return [scale * float(x) for x in (q * d).sum(dim=1).cpu()]

    return score
