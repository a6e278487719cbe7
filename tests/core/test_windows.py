"""Long-document windows: splitting, expansion with owners, and the best-window reduction."""

from __future__ import annotations

import itertools
import random

import pytest

from rerank_core.windows import (
    best_per_document,
    expand_documents,
    split_windows,
    window_spans,
)


def random_text(seed: int, n_words: int) -> str:
    rng = random.Random(seed)
    words = ["a", "tree", "photosynthesis", "is", "of", "chlorophyll", "sun", "rivers"]
    return " ".join(rng.choice(words) for _ in range(n_words))


def test_a_text_that_fits_is_one_window() -> None:
    assert split_windows("short text", 100, 20) == ["short text"]
    assert split_windows("", 100, 20) == [""]
    exact = "x" * 100
    assert split_windows(exact, 100, 20) == [exact]


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize(("window", "overlap"), [(100, 30), (150, 0), (120, 59)])
def test_windows_cover_the_text_overlap_and_keep_words_whole(
    seed: int, window: int, overlap: int
) -> None:
    text = random_text(seed, 300)
    positions = window_spans(text, window, overlap)
    windows = split_windows(text, window, overlap)
    assert windows == [text[start:end] for start, end in positions]
    assert len(windows) > 1
    assert all(0 < len(w) <= window for w in windows)
    assert positions[0][0] == 0
    assert positions[-1][1] == len(text)
    for (start, end), (next_start, _) in itertools.pairwise(positions):
        # No gap: whatever lies between two windows is whitespace only.
        assert next_start <= end or text[end:next_start].isspace()
        if overlap:
            assert next_start < end, "consecutive windows share text"
        # Cuts and starts fall between words.
        assert end == len(text) or text[end].isspace()
        assert next_start == 0 or text[next_start - 1].isspace()
        # The back half of a window is never thrown away for a whitespace cut.
        assert end - start > window // 2


def test_no_overlap_splits_words_into_disjoint_windows() -> None:
    text = " ".join(f"w{i}" for i in range(200))
    windows = split_windows(text, 100, 0)
    words = [w for window in windows for w in window.split()]
    assert words == text.split()


def test_text_without_whitespace_is_cut_hard_at_the_window_size() -> None:
    text = "".join(chr(ord("a") + i % 26) for i in range(250))
    windows = split_windows(text, 100, 30)
    assert windows == [text[0:100], text[70:170], text[140:240], text[210:250]]


@pytest.mark.parametrize(("window", "overlap"), [(100, 100), (100, 150), (100, -1), (0, 0)])
def test_an_overlap_that_prevents_progress_is_rejected(window: int, overlap: int) -> None:
    with pytest.raises(ValueError):
        split_windows("some text " * 50, window, overlap)


def test_expand_documents_names_each_window_owner_in_order() -> None:
    long = random_text(1, 200)
    documents = ["short one", long, "", "another short"]
    texts, owners = expand_documents(documents, 120, 20)
    n_long = len(split_windows(long, 120, 20))
    assert n_long > 1
    assert owners == [0] + [1] * n_long + [2, 3]
    assert texts[0] == "short one"
    assert texts[1 : 1 + n_long] == split_windows(long, 120, 20)
    assert texts[-2:] == ["", "another short"]


def test_best_per_document_keeps_each_documents_highest_window() -> None:
    owners = [0, 1, 1, 1, 2]
    scores = [0.5, -2.0, 3.0, 1.0, -7.5]
    assert best_per_document(scores, owners, 3) == [0.5, 3.0, -7.5]


def test_best_per_document_rejects_scores_that_do_not_match_the_windows() -> None:
    with pytest.raises(ValueError, match="2 scores for 3 windows"):
        best_per_document([1.0, 2.0], [0, 0, 1], 2)
    with pytest.raises(ValueError, match=r"without a scored window: \[1\]"):
        best_per_document([1.0, 2.0], [0, 2], 3)
