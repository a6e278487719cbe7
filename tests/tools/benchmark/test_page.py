"""docs/benchmarks.md is written from the result files it names: regenerated, it must match."""

from __future__ import annotations

from rerank_tools.benchmark.page import DOCS, render


def test_the_benchmarks_page_matches_its_result_files() -> None:
    assert (DOCS / "benchmarks.md").read_text() == render(), (
        "docs/benchmarks.md is out of date: run `python -m rerank_tools.benchmark.page > "
        "docs/benchmarks.md`"
    )
