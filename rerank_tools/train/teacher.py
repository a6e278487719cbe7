"""A bi-encoder as the teacher of the distillation stage: it scores (query, passage) pairs by the
cosine of their embeddings, each distinct text encoded once."""

from __future__ import annotations

from collections.abc import Sequence

from rerank_tools.train.data import PairTeacher


def bi_encoder_teacher(source: str, device: str, scale: float, progress: bool) -> PairTeacher:
    """A ``PairTeacher`` returning ``scale`` x cosine(query, passage) of the sentence-transformers
    model at ``source`` (a directory or a Hugging Face id). The scale spreads the cosines
    (about 0 to 0.8 on MS MARCO) over the range of a cross-encoder's logits."""
    from pathlib import Path

    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(source, device=device, local_files_only=Path(source).is_dir())

    def score(pairs: Sequence[tuple[str, str]]) -> list[float]:
        texts = list(dict.fromkeys(t for pair in pairs for t in pair))
        embeddings = model.encode(
            texts,
            batch_size=64,
            normalize_embeddings=True,
            convert_to_tensor=True,
            show_progress_bar=progress,
        )
        row = {text: i for i, text in enumerate(texts)}
        q = embeddings[[row[query] for query, _ in pairs]]
        d = embeddings[[row[text] for _, text in pairs]]
        return [scale * float(x) for x in (q * d).sum(dim=1).cpu()]

    return score
