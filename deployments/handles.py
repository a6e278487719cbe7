"""Backends the router holds besides the API backends of the core: a local model reached through
its deployment's handle, and an API backend left disabled because its key is not set."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ray.exceptions import RayActorError, RayTaskError
from ray.serve.exceptions import (
    BackPressureError,
    DeploymentUnavailableError,
    ReplicaUnavailableError,
)
from ray.serve.handle import DeploymentHandle

from deployments.timing import record_model
from rerank_core.admission import ModelQueue
from rerank_core.backends import Backend
from rerank_core.errors import BackendError, BackendRateLimited, BackendUnavailable
from rerank_core.types import LongDocuments, Scored

#: Ray's errors that mean a model's replica cannot be reached now.
UNREACHABLE = (RayActorError, ReplicaUnavailableError, DeploymentUnavailableError)


class DeploymentBackend(Backend):
    """A local model served by its own deployment, reached through its ``DeploymentHandle``; the
    model's timing of the request is added to the request's (``deployments.timing``).

    Ray's failures become the typed errors the chain understands: a full queue is a rate limit, a
    dead or missing replica is unavailable, and an error raised inside the model is unavailable too
    (another backend can still answer).
    """

    def __init__(self, name: str, handle: DeploymentHandle, queue: ModelQueue | None = None) -> None:
        self.name = name
        self.handle = handle
        #: What this router knows of the model's queue (``rerank_core.admission``).
        self.queue = queue or ModelQueue(name, None, float("inf"))

    async def rerank(
        self,
        query: str,
        documents: Sequence[str],
        top_n: int | None = None,
        *,
        long_documents: LongDocuments | None = None,
    ) -> list[Scored]:
        # Refused here, before any hop to a replica, when the answer would come past the deadline.
        self.queue.admit(len(documents))
        with self.queue.outstanding(len(documents)):
            return await self._call(query, documents, top_n, long_documents)

    async def _call(
        self,
        query: str,
        documents: Sequence[str],
        top_n: int | None,
        long_documents: LongDocuments | None,
    ) -> list[Scored]:
        try:
            answer = await self.handle.rerank.remote(query, list(documents), top_n, long_documents)
        except BackPressureError:
            raise BackendRateLimited(f"model {self.name} is overloaded", backend=self.name) from None
        except RayTaskError as exc:
            cause = exc.cause
            if isinstance(cause, BackendError):
                raise cause from None
            raise BackendUnavailable(
                f"model {self.name} failed ({type(cause).__name__})", backend=self.name
            ) from None
        except UNREACHABLE as exc:
            raise BackendUnavailable(
                f"model {self.name} is unavailable ({type(exc).__name__})", backend=self.name
            ) from None
        record_model(answer.timing)
        return answer.scored

    async def device(self) -> str:
        """Where the model runs (a call that also proves a replica answers)."""
        return str(await self.handle.device.remote())

    async def stats(self) -> dict[str, Any]:
        """Batching statistics of this model, gathered from every running replica."""
        return dict(await self.handle.stats.remote())


class DisabledBackend(Backend):
    """An API backend whose key is not set: the chain skips it with a reason that says so."""

    def __init__(self, name: str, key_env: str) -> None:
        self.name = name
        self.key_env = key_env

    async def rerank(
        self,
        query: str,
        documents: Sequence[str],
        top_n: int | None = None,
        *,
        long_documents: LongDocuments | None = None,
    ) -> list[Scored]:
        raise BackendUnavailable(
            f"{self.name} is not enabled: {self.key_env} is not set", backend=self.name
        )
