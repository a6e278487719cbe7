"""TREC-like queries and passages the family tests score, and the text the tiny tokenizers are
trained on."""

from __future__ import annotations

from rerank_core.config import CAUSAL_LM_PRESETS

_LONG = (
    "The Treaty of Versailles, signed on 28 June 1919, ended the state of war between Germany and "
    "the Allied Powers. Its most contested clause, Article 231, assigned responsibility for the "
    "war's damage to Germany and its allies, and served as the legal basis for reparations. The "
    "Reparation Commission set the sum at 132 billion gold marks in 1921, divided into A, B and C "
    "bonds; only the A and B bonds, about 50 billion marks, were expected to be paid. Economists "
    "such as John Maynard Keynes argued in The Economic Consequences of the Peace that the terms "
    "were too harsh and would ruin the European economy, while others, including Étienne Mantoux, "
    "answered that Germany could have paid had it chosen to. The Dawes Plan of 1924 and the Young "
    "Plan of 1929 rescheduled the payments, and the Lausanne Conference of 1932 suspended them. "
    "Historians still debate whether the treaty was a cause of the Second World War."
)

#: TREC-like queries, each with candidate passages of mixed lengths and topics.
QUERIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "how long does it take to boil an egg",
        (
            "Place the eggs in a saucepan, cover with cold water and bring to a boil. For a soft "
            "yolk, cook 6 minutes; for hard-boiled eggs, 10 to 12 minutes, then cool in ice water.",
            "Egg whites are about 90% water and 10% protein.",
            "Boiling point of water decreases with altitude: at 3,000 m it boils near 90 °C.",
            "The Eiffel Tower is 330 metres tall and was completed in 1889.",
            _LONG,
        ),
    ),
    (
        "what caused the treaty of versailles reparations",
        (
            _LONG,
            "Versailles is a city in the Île-de-France region, known for its palace.",
            "Reparations were payments Germany owed after World War I under Article 231.",
            "A treaty is a formal agreement between states in international law.",
        ),
    ),
    (
        "symptoms of vitamin d deficiency",
        (
            "Vitamin D deficiency can cause bone pain, muscle weakness, fatigue and, in children, "
            "rickets. Adults may develop osteomalacia.",
            "Vitamin C is found in citrus fruits such as oranges and lemons.",
            "Sunlight exposure lets the skin produce vitamin D3 (cholecalciferol).",
            "What's the recommended daily intake? 600 IU for most adults; 800 IU over 70.",
            "The naïve café served crème brûlée.",
            "Symptoms",
        ),
    ),
    (
        "who wrote the economic consequences of the peace?",
        (
            "John Maynard Keynes wrote The Economic Consequences of the Peace in 1919.",
            "Peace talks resumed in Geneva on Tuesday.",
            "The economy grew 2.1% in the third quarter, the statistics office said.",
        ),
    ),
)

#: Every (query, passage) pair of ``QUERIES``, in order.
PAIRS: list[tuple[str, str]] = [(q, p) for q, passages in QUERIES for p in passages]


def corpus() -> list[str]:
    """Text the tiny tokenizers are trained on: the queries, passages and the causal LMs' prompt
    words, so real words get real subwords and rare ones are split."""
    lines = [text for q, passages in QUERIES for text in (q, *passages)]
    for preset in CAUSAL_LM_PRESETS.values():
        template = preset["template"]
        lines.append("".join(template) if isinstance(template, tuple | list) else template)
        lines.append(preset["instruction"])
    lines += ["yes no Yes No yes no Yes No"] * 20
    return lines * 3


def per_query(values: list[float]) -> list[list[float]]:
    """``values`` (one per pair of ``PAIRS``) grouped by query."""
    groups, start = [], 0
    for _, passages in QUERIES:
        groups.append(values[start : start + len(passages)])
        start += len(passages)
    return groups


def order(values: list[float]) -> list[list[int]]:
    """Each query's passages, best first, as indices into that query's passages."""
    return [sorted(range(len(g)), key=lambda i: -g[i]) for g in per_query(values)]

