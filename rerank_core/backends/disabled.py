"""An API backend left off because its key is not set: routes skip it, with a reason that says so."""

from __future__ import annotations

from rerank_core.backends.base import Backend
from rerank_core.errors import BackendDisabled
from rerank_core.types import Answer, RankRequest


class DisabledBackend(Backend):
    """An API backend whose key is not set: every call raises ``BackendDisabled`` naming the
    variable, so the chain skips it without a retry and without counting it as a failure."""

    def __init__(self, name: str, key_env: str) -> None:
        self.name = name
        self.key_env = key_env

    async def answer(self, request: RankRequest) -> Answer:
        raise BackendDisabled(
            f"{self.name} is not enabled: {self.key_env} is not set", backend=self.name
        )
