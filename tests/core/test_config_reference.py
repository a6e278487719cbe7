"""The configuration reference (docs/configuration.md) is the schema's own: regenerated from the
config models, it must match the page word for word, and every field must say what it does."""

from __future__ import annotations

from pathlib import Path

from rerank_core.config.reference import render, undocumented

PAGE = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def test_every_field_has_a_description() -> None:
    assert undocumented() == []


def test_the_page_matches_the_schema() -> None:
    assert PAGE.read_text() == render(), (
        "docs/configuration.md is out of date: run "
        "`python -m rerank_core.config.reference > docs/configuration.md`"
    )
