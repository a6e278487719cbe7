"""A bounded cache of raw scores by (model, query, document), for a local model's replica.

Keys are 16-byte BLAKE2b digests of the model's fingerprint, the query and the document, so an
entry costs the same whatever the texts' length and the bound is a memory bound. The fingerprint
(``model_fingerprint``) covers the model's configuration and, for a local directory, its files'
sizes and modification times: a replica built for another model or another version of the same
directory never answers from entries it did not score.

Not thread-safe: a Serve replica uses it from its event loop only.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rerank_core.config import BiEncoderConfig, CrossEncoderConfig

#: Bytes charged per entry (digest key, float value, ordered-dict slot): at least what tracemalloc
#: counts per entry over many entries, so that the cache stays within its ``score_cache_mib``.
ENTRY_BYTES = 192

_SEPARATOR = b"\x00"


def model_fingerprint(config: CrossEncoderConfig | BiEncoderConfig) -> str:
    """What makes a raw score: the model's configuration (serving settings aside) and, when the
    model is a local directory, every file's relative path, size and modification time."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(config.model_dump_json(exclude={"serving"}).encode())
    root = Path(config.model)
    if root.is_dir():
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            stat = path.stat()
            digest.update(f"{path.relative_to(root)}:{stat.st_size}:{stat.st_mtime_ns};".encode())
    return digest.hexdigest()


@dataclass
class CacheStats:
    """Counters of a ``ScoreCache`` since it was made."""

    hits: int = 0
    misses: int = 0


class ScoreCache:
    """Least-recently-used raw scores of one model, at most ``max_bytes`` (``ENTRY_BYTES`` each).

    ``max_bytes`` below one entry makes a cache that stores nothing and counts every lookup a miss.
    """

    def __init__(self, fingerprint: str, max_bytes: int) -> None:
        self.fingerprint = fingerprint.encode()
        self.max_entries = max(0, max_bytes // ENTRY_BYTES)
        self.stats = CacheStats()
        self._scores: OrderedDict[bytes, float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._scores)

    def key(self, query: str, document: str) -> bytes:
        """The entry's key: a digest of the fingerprint, the query and the document."""
        digest = hashlib.blake2b(self.fingerprint, digest_size=16)
        digest.update(_SEPARATOR)
        digest.update(query.encode("utf-8", "surrogatepass"))
        digest.update(_SEPARATOR)
        digest.update(document.encode("utf-8", "surrogatepass"))
        return digest.digest()

    def lookup(self, pairs: Sequence[tuple[str, str]]) -> tuple[list[float | None], list[bytes]]:
        """Each pair's cached raw score (None on a miss) and its key, for ``store``."""
        keys = [self.key(q, d) for q, d in pairs]
        found: list[float | None] = []
        for key in keys:
            score = self._scores.get(key)
            if score is None:
                self.stats.misses += 1
            else:
                self.stats.hits += 1
                self._scores.move_to_end(key)
            found.append(score)
        return found, keys

    def store(self, keys: Sequence[bytes], scores: Sequence[float]) -> None:
        """Remember ``scores`` under ``keys``, evicting the least recently used past the bound."""
        if not self.max_entries:
            return
        for key, score in zip(keys, scores, strict=True):
            self._scores[key] = float(score)
            self._scores.move_to_end(key)
        while len(self._scores) > self.max_entries:
            self._scores.popitem(last=False)

    def info(self) -> dict[str, int]:
        """Hits, misses, entries held and the most it holds."""
        return {
            "hits": self.stats.hits,
            "misses": self.stats.misses,
            "entries": len(self._scores),
            "max_entries": self.max_entries,
        }
