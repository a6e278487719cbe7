"""Long documents as overlapping character windows, each scored on its own, best window wins.

Pure functions, kept apart from any model: ``expand_documents`` turns documents into the texts to
score plus, for each text, the index of the document it came from; ``best_per_document`` folds the
texts' scores back into one score per document. A local backend uses them around ``score_pairs``,
and so can a Serve deployment that scores pairs from many requests at once.
"""

from __future__ import annotations

from collections.abc import Sequence


def split_windows(text: str, window_chars: int, overlap_chars: int) -> list[str]:
    """Cut ``text`` into windows of at most ``window_chars`` characters, each overlapping the one
    before by about ``overlap_chars``; a text that fits is one window. See ``window_spans``."""
    return [text[start:end] for start, end in window_spans(text, window_chars, overlap_chars)]


def window_spans(text: str, window_chars: int, overlap_chars: int) -> list[tuple[int, int]]:
    """The ``(start, end)`` character spans of ``text``'s windows, in order.

    Cuts fall on whitespace where the back half of a window has any, and windows begin at a word
    where one begins in the overlap, so words are kept whole; a text without whitespace is cut hard.
    Every character of ``text`` but whitespace between windows is in some window.
    """
    if window_chars <= 0:
        raise ValueError("window_chars must be positive")
    if not 0 <= overlap_chars < window_chars:
        raise ValueError("overlap_chars must be at least 0 and less than window_chars")
    spans: list[tuple[int, int]] = []
    start = 0
    while len(text) - start > window_chars:
        cut = _cut_point(text, start, window_chars, overlap_chars)
        spans.append((start, cut))
        start = _next_start(text, start, cut, overlap_chars)
    if start < len(text) or not spans:
        spans.append((start, len(text)))
    return spans


def _cut_point(text: str, start: int, window_chars: int, overlap_chars: int) -> int:
    """Where the window from ``start`` ends: the last whitespace in its back half, else its end.

    The cut is kept past ``start + overlap_chars`` so that the next window starts after ``start``.
    """
    end = start + window_chars
    lowest = start + max(overlap_chars + 1, window_chars // 2)
    for pos in range(end, lowest - 1, -1):
        if text[pos].isspace():
            return pos
    return end


def _next_start(text: str, start: int, cut: int, overlap_chars: int) -> int:
    """Where the window after ``text[start:cut]`` begins: ``overlap_chars`` before the cut, moved
    back to the start of the word it lands in (never back to ``start``), then past whitespace."""
    begin = cut - overlap_chars
    if not text[begin].isspace():
        word_start = begin
        while word_start > start + 1 and not text[word_start - 1].isspace():
            word_start -= 1
        if text[word_start - 1].isspace():
            begin = word_start
    while begin < len(text) and text[begin].isspace():
        begin += 1
    return begin


def expand_documents(
    documents: Sequence[str], window_chars: int, overlap_chars: int
) -> tuple[list[str], list[int]]:
    """Every document's windows, in order, and for each window the index of its document.

    A document that fits in ``window_chars`` (the empty one included) is one window.
    """
    texts: list[str] = []
    owners: list[int] = []
    for index, document in enumerate(documents):
        windows = split_windows(document, window_chars, overlap_chars)
        texts.extend(windows)
        owners.extend([index] * len(windows))
    return texts, owners


def best_per_document(
    scores: Sequence[float], owners: Sequence[int], n_documents: int
) -> list[float]:
    """Each document's best (highest) window score, in document order.

    Raises ``ValueError`` when ``scores`` and ``owners`` differ in length or a document has no
    window: both would mean the scores were not produced from ``expand_documents``' texts.
    """
    if len(scores) != len(owners):
        raise ValueError(f"{len(scores)} scores for {len(owners)} windows")
    best: list[float | None] = [None] * n_documents
    for score, owner in zip(scores, owners, strict=True):
        current = best[owner]
        if current is None or score > current:
            best[owner] = score
    missing = [i for i, s in enumerate(best) if s is None]
    if missing:
        raise ValueError(f"documents without a scored window: {missing}")
    return [float(s) for s in best if s is not None]
