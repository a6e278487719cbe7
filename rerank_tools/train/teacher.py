"""A bi-encoder as the teacher of the distillation stage: it scores (query, passage) pairs by the
cosine of their embeddings, each distinct text encoded once, and retrieves a pseudo-query's
candidates from a pool of passages."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any


class BiEncoderTeacher:
    """``teacher(pairs)`` returns ``scale`` x cosine(query, passage) of the sentence-transformers
    model at ``source`` (a directory or a Hugging Face id); the scale spreads the cosines (about 0
    to 0.8 on MS MARCO) over the range of a cross-encoder's logits. ``retrieve`` gives each query's
    nearest passages of a pool, the teacher's own first stage for queries that have none."""

    def __init__(self, source: str, device: str, scale: float, progress: bool) -> None:
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(source, device=device, local_files_only=Path(source).is_dir())
        self.scale = scale
        self.progress = progress

    def _encode(self, texts: Sequence[str]) -> Any:
        return self.model.encode(
            list(texts),
            batch_size=64,
            normalize_embeddings=True,
            convert_to_tensor=True,
            show_progress_bar=self.progress,
        )

    def __call__(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
        texts = list(dict.fromkeys(t for pair in pairs for t in pair))
        embeddings = self._encode(texts)
        row = {text: i for i, text in enumerate(texts)}
        q = embeddings[[row[query] for query, _ in pairs]]
        d = embeddings[[row[text] for _, text in pairs]]
        return [self.scale * float(x) for x in (q * d).sum(dim=1).cpu()]

    def retrieve(self, queries: Sequence[str], pool: Sequence[str], k: int) -> list[list[int]]:
        """For each query, the indices into ``pool`` of its ``k`` nearest passages, nearest first."""
        import torch

        docs = self._encode(pool)
        found: list[list[int]] = []
        for start in range(0, len(queries), 256):
            q = self._encode(queries[start : start + 256])
            top = torch.topk(q @ docs.T, min(k, len(pool)), dim=1).indices
            found += top.cpu().tolist()
        return found


def bi_encoder_teacher(source: str, device: str, scale: float, progress: bool) -> BiEncoderTeacher:
    """The distillation teacher at ``source``."""
    return BiEncoderTeacher(source, device, scale, progress)
