"""Calibration text for static int8 quantization (``quantization: int8-static``).

Static quantization fixes each activation's int8 range ahead of time from the activations seen on
calibration inputs, so those inputs should look like the traffic: query and passage lengths and
vocabulary. A config names its own with ``calibration_file`` (JSON lines, each ``{"query": ...,
"documents": [...]}``, the body of a rerank request); without one, the built-in set below is used:
short web-search queries crossed with passages of typical MS MARCO length on everyday topics, so
each batch mixes relevant and irrelevant pairs, as a reranker's batches do.
"""

from __future__ import annotations

import json
from pathlib import Path

from rerank_core.config import ConfigError

QUERIES = (
    "how do plants make food",
    "symptoms of vitamin d deficiency",
    "what is the capital of australia",
    "how long to boil an egg",
    "best way to learn a second language",
    "why is the sky blue",
    "what causes inflation",
    "how to reset a wifi router",
)

PASSAGES = (
    "Photosynthesis is the process by which green plants use sunlight, water and carbon dioxide to "
    "make glucose and oxygen. It takes place mainly in the leaves, inside chloroplasts that hold the "
    "green pigment chlorophyll, which absorbs light energy.",
    "Vitamin D deficiency can cause fatigue, bone pain, muscle weakness and low mood. In children a "
    "severe lack leads to rickets; in adults, to osteomalacia. Sunlight, oily fish and fortified foods "
    "are the main sources, and a blood test confirms a deficiency.",
    "Canberra is the capital city of Australia. It was chosen in 1908 as a compromise between Sydney "
    "and Melbourne, the two largest cities, and Parliament first sat there in 1927. About 460,000 "
    "people live in the Australian Capital Territory.",
    "For a soft-boiled egg with a runny yolk, boil it for six minutes; for a hard-boiled egg, ten to "
    "twelve minutes. Start the eggs in boiling water, then cool them in iced water so that they stop "
    "cooking and peel easily.",
    "Adults learn a new language best with daily practice: short lessons, speaking with native "
    "speakers early, reading and listening to material they enjoy, and spaced repetition of "
    "vocabulary. Immersion speeds progress more than any single method.",
    "The sky looks blue because molecules in the air scatter short wavelengths of sunlight much more "
    "than long ones, an effect called Rayleigh scattering. At sunset light crosses more air, the blue "
    "is scattered away, and reds and oranges remain.",
    "Inflation is a general rise in prices over time. It can be driven by demand growing faster than "
    "supply, by rising costs of energy and wages, or by an expanding money supply. Central banks raise "
    "interest rates to slow it.",
    "To reset most home routers, hold the small reset button on the back for about ten seconds with a "
    "paper clip until the lights flash. The router restarts with its factory settings, so the network "
    "name and password must be set again.",
    "The stock market closed lower on Monday as technology shares fell after weaker earnings reports, "
    "while energy companies gained on higher oil prices.",
    "Regular exercise lowers the risk of heart disease, type 2 diabetes and depression. Adults should "
    "aim for at least 150 minutes of moderate activity a week, such as brisk walking or cycling, plus "
    "strength training twice a week.",
    "The Great Barrier Reef, off the coast of Queensland, is the largest coral reef system in the "
    "world, stretching over 2,300 kilometres. Rising sea temperatures have caused repeated mass "
    "bleaching events in recent decades.",
    "Python is a high-level programming language known for its readable syntax. It is widely used in "
    "data science, web development and automation, and its standard library covers files, networking "
    "and text processing.",
)


def builtin_pairs() -> list[tuple[str, str]]:
    """Every built-in query with every built-in passage: 96 pairs."""
    return [(q, p) for q in QUERIES for p in PASSAGES]


def calibration_pairs(name: str, calibration_file: str | None, limit: int = 256) -> list[tuple[str, str]]:
    """Backend ``name``'s calibration pairs: from ``calibration_file`` (at most ``limit``), else the
    built-in set. A file that is missing or malformed is a ``ConfigError`` naming the key."""
    if calibration_file is None:
        return builtin_pairs()
    pairs: list[tuple[str, str]] = []
    try:
        with Path(calibration_file).expanduser().open() as lines:
            for number, line in enumerate(lines, 1):
                if not line.strip():
                    continue
                row = json.loads(line)
                query, documents = row["query"], row["documents"]
                if not isinstance(query, str) or not all(isinstance(d, str) for d in documents):
                    raise ValueError(f"line {number}: query and documents must be text")
                pairs += [(query, d) for d in documents]
                if len(pairs) >= limit:
                    break
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(
            f"backends.{name}.calibration_file: cannot read {calibration_file!r}: {exc}",
            field="calibration_file",
        ) from exc
    if not pairs:
        raise ConfigError(
            f"backends.{name}.calibration_file: {calibration_file!r} holds no query and documents",
            field="calibration_file",
        )
    return pairs[:limit]
