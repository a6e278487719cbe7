"""A tiny BERT cross-encoder built offline in about a second, for tests that need a real model.

``build_tiny_cross_encoder(path)`` writes a directory that ``sentence_transformers.CrossEncoder``
loads like any Hugging Face cross-encoder (config, safetensors weights, WordPiece vocabulary). The
model is trained for a few seeded steps on a handful of topics, so for the queries of ``EXAMPLES``
the document about the query's topic scores above the others. The build is deterministic, and a
directory already holding this recipe's model is reused, so a session fixture and Ray Serve replicas
can share one path.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transformers import BertForSequenceClassification

#: Words of each topic; queries and relevant documents draw from their topic's words.
TOPICS: dict[str, list[str]] = {
    "cats": ["cat", "kitten", "purr", "whiskers", "meow"],
    "rockets": ["rocket", "launch", "orbit", "fuel", "space"],
    "bread": ["bread", "flour", "oven", "yeast", "bake"],
    "rivers": ["river", "water", "flow", "bank", "fish"],
    "music": ["guitar", "song", "melody", "drum", "sing"],
    "trains": ["train", "rail", "station", "ticket", "track"],
}
#: Topic-free words that pad documents, so length alone says nothing about relevance.
FILLER: list[str] = ["the", "a", "of", "and", "is", "it", "this", "that", "with", "very"]
SPECIAL_TOKENS: list[str] = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
VOCAB: list[str] = SPECIAL_TOKENS + FILLER + [w for words in TOPICS.values() for w in words]

#: Longest input, in tokens, the tiny model accepts (its tokenizer truncates to it).
MAX_LENGTH = 128


@dataclass(frozen=True)
class RankingExample:
    """A query, the document relevant to it, and documents that are not."""

    query: str
    relevant: str
    irrelevant: tuple[str, ...]


#: Examples the tiny model ranks correctly: the relevant document above every irrelevant one.
EXAMPLES: tuple[RankingExample, ...] = (
    RankingExample(
        query="cat purr",
        relevant="the kitten is a cat that will purr with whiskers",
        irrelevant=(
            "the rocket will launch into orbit",
            "bread from flour and yeast in the oven",
            "a song with guitar and drum",
        ),
    ),
    RankingExample(
        query="rocket launch",
        relevant="this rocket is very fast and the launch reaches orbit",
        irrelevant=(
            "the river water will flow",
            "the cat and the kitten",
            "a train at the station",
        ),
    ),
    RankingExample(
        query="bake bread",
        relevant="bake the bread with yeast and flour in the oven",
        irrelevant=(
            "the guitar song and melody",
            "rocket fuel for space",
            "fish in the river",
        ),
    ),
    RankingExample(
        query="train ticket",
        relevant="a ticket for the train at the station",
        irrelevant=(
            "the kitten will meow",
            "water and fish of the river bank",
            "flour and yeast",
        ),
    ),
)

# Bump when the recipe below changes, so a cached directory from an older recipe is rebuilt.
_RECIPE_VERSION = 1
_SEED = 1234
_STEPS = 150
_BATCH = 16
_LEARNING_RATE = 3e-3
_MARKER = "tiny_model_recipe.json"


def _recipe() -> dict[str, object]:
    return {
        "version": _RECIPE_VERSION,
        "seed": _SEED,
        "steps": _STEPS,
        "batch": _BATCH,
        "learning_rate": _LEARNING_RATE,
        "vocab": VOCAB,
        "topics": TOPICS,
    }


def _recipe_digest() -> str:
    return hashlib.sha256(json.dumps(_recipe(), sort_keys=True).encode()).hexdigest()


def _sample_doc(rng: random.Random, topic: str | None, length: int) -> str:
    """``length`` words: at least two from ``topic`` and the rest topic words or filler; only
    filler when ``topic`` is None."""
    if topic is None:
        return " ".join(rng.choice(FILLER) for _ in range(length))
    words = [rng.choice(TOPICS[topic]) for _ in range(2)]
    for _ in range(length - 2):
        words.append(rng.choice(TOPICS[topic]) if rng.random() < 0.3 else rng.choice(FILLER))
    rng.shuffle(words)
    return " ".join(words)


def _training_pairs(rng: random.Random, n: int) -> list[tuple[str, str, float]]:
    """Seeded (query, document, label) triples: half on the query's topic (1.0), half on another
    topic or on none (0.0)."""
    names = sorted(TOPICS)
    triples = []
    for i in range(n):
        topic = rng.choice(names)
        query = " ".join(rng.sample(TOPICS[topic], rng.choice((1, 2))))
        length = rng.randint(3, 24)
        if i % 2 == 0:
            triples.append((query, _sample_doc(rng, topic, length), 1.0))
        else:
            other = rng.choice([*(t for t in names if t != topic), None])
            triples.append((query, _sample_doc(rng, other, length), 0.0))
    return triples


def _topic_head_start(model: BertForSequenceClassification, hidden: int) -> None:
    """Add one shared random direction to the embeddings of each topic's words, so a few
    steps suffice to learn "query and document are about the same topic"."""
    import torch

    embeddings = model.bert.embeddings.word_embeddings.weight
    with torch.no_grad():
        for words in TOPICS.values():
            direction = torch.randn(hidden)
            for word in words:
                embeddings[VOCAB.index(word)] += direction


def _train_and_save(target: Path) -> None:
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizer

    vocab_file = target / "vocab.txt"
    vocab_file.write_text("\n".join(VOCAB) + "\n")
    tokenizer = BertTokenizer(str(vocab_file), do_lower_case=True, model_max_length=MAX_LENGTH)
    config = BertConfig(
        vocab_size=len(VOCAB),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=MAX_LENGTH,
        num_labels=1,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        # Larger initial weights than BERT's 0.02: from 0.02 a model this small stays at the
        # constant answer for hundreds of steps.
        initializer_range=0.2,
    )
    rng = random.Random(_SEED)
    data = _training_pairs(rng, _STEPS * _BATCH)
    threads = torch.get_num_threads()
    # One thread: tiny matrices train faster without thread hand-offs, and the result does not
    # depend on the machine's core count. fork_rng leaves the caller's global torch RNG untouched.
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(_SEED)
            model = BertForSequenceClassification(config)
            _topic_head_start(model, hidden=config.hidden_size)
            optimizer = torch.optim.AdamW(model.parameters(), lr=_LEARNING_RATE)
            loss_fn = torch.nn.BCEWithLogitsLoss()
            model.train()
            for step in range(_STEPS):
                batch = data[step * _BATCH : (step + 1) * _BATCH]
                features = tokenizer(
                    [q for q, _, _ in batch],
                    [d for _, d, _ in batch],
                    padding=True,
                    truncation=True,
                    return_tensors="pt",
                )
                labels = torch.tensor([y for _, _, y in batch])
                loss = loss_fn(model(**features).logits.squeeze(-1), labels)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
    finally:
        torch.set_num_threads(threads)
    model.eval()
    model.save_pretrained(str(target))
    tokenizer.save_pretrained(str(target))
    (target / _MARKER).write_text(json.dumps({"digest": _recipe_digest()}))


def is_built(path: Path) -> bool:
    """Whether ``path`` holds the model of this module's current recipe."""
    marker = path / _MARKER
    if not marker.is_file():
        return False
    return json.loads(marker.read_text()).get("digest") == _recipe_digest()


def build_tiny_cross_encoder(path: Path) -> Path:
    """Build the tiny cross-encoder into ``path`` (reused when already built) and return ``path``.

    ``path`` must not exist, be empty, or hold an earlier build. The model is written to a
    temporary sibling and renamed into place, so a reader never sees half a model.
    """
    path = Path(path)
    if is_built(path):
        return path
    if path.exists() and any(path.iterdir()):
        if not (path / _MARKER).is_file():
            raise FileExistsError(f"{path} is not empty and holds no tiny model")
        shutil.rmtree(path)  # an older recipe's build
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}-", dir=path.parent))
    try:
        _train_and_save(staging)
        if path.exists():
            path.rmdir()
        os.replace(staging, path)
    except OSError:
        # Another process finished the same build first; its result is identical.
        if not is_built(path):
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return path
