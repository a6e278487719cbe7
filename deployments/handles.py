"""The backend the router holds besides those of the core: a local model reached through its
deployment's handle."""

from __future__ import annotations

from ray.exceptions import RayActorError, RayTaskError
from ray.serve.exceptions import (
    BackPressureError,
    DeploymentUnavailableError,
    ReplicaUnavailableError,
)
from ray.serve.handle import DeploymentHandle

from rerank_core.admission import ModelQueue
from rerank_core.backends import Backend
from rerank_core.errors import BackendError, BackendRateLimited, BackendUnavailable
from rerank_core.types import Answer, RankRequest

#: Ray's errors that mean a model's replica cannot be reached now.
UNREACHABLE = (RayActorError, ReplicaUnavailableError, DeploymentUnavailableError)


class DeploymentBackend(Backend):
    """A local model served by its own deployment, reached through its ``DeploymentHandle``; the
    request goes as one object and the model's answer (ranking and timing) comes back as one.

    Ray's failures become the typed errors the chain understands: a full queue is a rate limit, a
    dead or missing replica is unavailable, and an error raised inside the model is unavailable too
    (another backend can still answer).
    """

    def __init__(self, name: str, handle: DeploymentHandle, queue: ModelQueue | None = None) -> None:
        self.name = name
        self.handle = handle
        #: What this router knows of the model's queue (``rerank_core.admission``).
        self.queue = queue or ModelQueue(name, None, float("inf"))

    async def answer(self, request: RankRequest) -> Answer:
        # Refused here, before any hop to a replica, when the answer would come past the deadline.
        n = len(request.documents)
        self.queue.admit(n, request.lane)
        with self.queue.outstanding(n):
            return await self._call(request)

    async def _call(self, request: RankRequest) -> Answer:
        try:
            answer: Answer = await self.handle.answer.remote(request)
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
        return answer

    async def device(self) -> str:
        """Where the model runs (a call that also proves a replica answers)."""
        return str(await self.handle.device.remote())
