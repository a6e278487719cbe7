"""What a model runtime (torch, ONNX Runtime, OpenVINO) raises on a batch, as a typed rerank error.

A runtime's own exceptions are not ``BackendError``s: ONNX Runtime's are not even
``RuntimeError``s, and their messages carry source paths and status codes. ``typed_runtime_error``
sorts them into the two kinds a caller can act on: an input the model cannot take (not
retryable: the same input fails the same way on every replica) and a failing device or runtime
(retryable).
"""

from __future__ import annotations

import re

from rerank_core.errors import BackendBadRequest, BackendError, BackendUnavailable

#: Longest runtime message kept in an error's text.
MAX_MESSAGE_CHARS = 300

#: Phrases of torch's and OpenVINO's messages that say the input does not fit the model (its
#: shape or names), as opposed to a device that failed. Only these: a device's or a runtime's own
#: failure may mention a shape in passing, and that stays retryable. An index out of an embedding
#: table is not one of them either: positions are checked when the model loads (``limits``), so
#: what is left is a tokenizer that does not fit its model, a broken deployment that another
#: backend may serve.
_INPUT_PHRASES = (
    # torch: a broadcast, a matmul, a view or a concatenation of the wrong sizes.
    "must match the size of tensor",
    "shapes cannot be multiplied",
    "is invalid for input of size",
    "sizes of tensors must match",
    # OpenVINO: an input name the model lacks, an input tensor of a shape the model refuses.
    "port for tensor name",
    "because the model input (shape=",
)
#: ONNX Runtime's exception classes that say the input does not fit the graph.
_ORT_INPUT_ERRORS = {"InvalidArgument"}
_ORT_PREFIX = re.compile(r"^\[ONNXRuntimeError\]\s*:\s*\d+\s*:\s*\w+\s*:\s*")
#: OpenVINO's lines that locate a failure in its sources rather than describe it.
_OPENVINO_LOCATION = re.compile(r"^(Exception from \S+:\d+:|Check '.*' failed at \S+:\d+:)$")


def _from_onnxruntime(exc: BaseException) -> bool:
    return type(exc).__module__.startswith("onnxruntime")


def clean_message(exc: BaseException) -> str:
    """``exc``'s message on one line: without ONNX Runtime's status prefix or OpenVINO's source
    locations, at most ``MAX_MESSAGE_CHARS`` long."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    described = [line for line in lines if not _OPENVINO_LOCATION.match(line)]
    text = " ".join(described or lines[-1:]) or type(exc).__name__
    text = _ORT_PREFIX.sub("", text)
    if len(text) > MAX_MESSAGE_CHARS:
        text = text[: MAX_MESSAGE_CHARS - 3] + "..."
    return text


def is_input_error(exc: BaseException) -> bool:
    """Whether ``exc`` says the model cannot take its input (its shape or names)."""
    if _from_onnxruntime(exc):
        return type(exc).__name__ in _ORT_INPUT_ERRORS
    message = str(exc).lower()
    return any(phrase in message for phrase in _INPUT_PHRASES)


def typed_runtime_error(backend: str, exc: BaseException, batch_size: int) -> BackendError | None:
    """The typed error for ``exc``, raised by a model runtime on a batch of ``batch_size`` pairs of
    backend ``backend``: ``BackendBadRequest`` (not retryable) when the model cannot take the
    input, ``BackendUnavailable`` (retryable) when the runtime or its device failed (out of
    memory, a device error). None when ``exc`` is no runtime's failure (a ``TypeError`` or
    ``KeyError`` is a bug in this code, and must surface as itself)."""
    if not (_from_onnxruntime(exc) or isinstance(exc, RuntimeError | IndexError | MemoryError)):
        return None
    message = clean_message(exc)
    if is_input_error(exc):
        return BackendBadRequest(
            f"model {backend} cannot take a batch of {batch_size}: {message}", backend=backend
        )
    return BackendUnavailable(
        f"model {backend} failed on a batch of {batch_size}: {message}", backend=backend
    )
