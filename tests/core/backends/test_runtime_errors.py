"""What a model runtime raises on a batch reaches the caller as a typed rerank error."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from onnxruntime.capi.onnxruntime_pybind11_state import Fail, InvalidArgument

from rerank_core.backends import build_backend
from rerank_core.backends.cross_encoder import CrossEncoderBackend
from rerank_core.backends.runtime_errors import MAX_MESSAGE_CHARS, typed_runtime_error
from rerank_core.config import CrossEncoderConfig
from rerank_core.errors import BackendBadRequest, BackendUnavailable

OPENVINO_PORT = (
    "Exception from src/inference/src/cpp/infer_request.cpp:189:\n"
    "Check '::getPort(port, name, {_impl->get_inputs(), _impl->get_outputs()})' failed at "
    "src/inference/src/cpp/infer_request.cpp:191:\n"
    "Port for tensor name token_type_ids was not found.\n\n"
)

OPENVINO_SHAPE = (
    "Exception from src/inference/src/cpp/infer_request.cpp:223:\n"
    "Can't set the input tensor with name: input_ids, because the model input (shape=[?,128]) "
    "and the tensor (shape=(4.300)) are incompatible\n"
)


@pytest.mark.parametrize(
    ("exc", "kind", "message"),
    [
        (
            InvalidArgument("[ONNXRuntimeError] : 2 : INVALID_ARGUMENT : Invalid input name: x"),
            BackendBadRequest,
            "Invalid input name: x",
        ),
        (Fail("[ONNXRuntimeError] : 1 : FAIL : bad allocation"), BackendUnavailable, "bad allocation"),
        (
            RuntimeError(OPENVINO_PORT),
            BackendBadRequest,
            "Port for tensor name token_type_ids was not found.",
        ),
        (
            RuntimeError("The size of tensor a (576) must match the size of tensor b (512)"),
            BackendBadRequest,
            "The size of tensor a (576) must match the size of tensor b (512)",
        ),
        (
            RuntimeError("mat1 and mat2 shapes cannot be multiplied (4x384 and 768x1)"),
            BackendBadRequest,
            "mat1 and mat2 shapes cannot be multiplied (4x384 and 768x1)",
        ),
        (
            RuntimeError("shape '[4, -1, 12, 32]' is invalid for input of size 1000"),
            BackendBadRequest,
            "shape '[4, -1, 12, 32]' is invalid for input of size 1000",
        ),
        (
            RuntimeError(OPENVINO_SHAPE),
            BackendBadRequest,
            "Can't set the input tensor with name: input_ids, because the model input "
            "(shape=[?,128]) and the tensor (shape=(4.300)) are incompatible",
        ),
        # A device's or runtime's own failure that mentions a shape in passing stays retryable.
        (
            RuntimeError("CUDA error: an illegal memory access was encountered (kernel shape 4x512)"),
            BackendUnavailable,
            "CUDA error: an illegal memory access was encountered (kernel shape 4x512)",
        ),
        (
            RuntimeError("cuDNN error: CUDNN_STATUS_EXECUTION_FAILED for input shape [4, 512]"),
            BackendUnavailable,
            "cuDNN error: CUDNN_STATUS_EXECUTION_FAILED for input shape [4, 512]",
        ),
        (
            RuntimeError("could not allocate memory for a tensor of shape [64, 512, 384]"),
            BackendUnavailable,
            "could not allocate memory for a tensor of shape [64, 512, 384]",
        ),
        # A token id past the embedding table: the tokenizer does not fit the model.
        (IndexError("index out of range in self"), BackendUnavailable, "index out of range in self"),
        (
            torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
            BackendUnavailable,
            "CUDA out of memory. Tried to allocate 2.00 GiB",
        ),
        (MemoryError(), BackendUnavailable, "MemoryError"),
    ],
)
def test_a_runtime_failure_becomes_a_typed_error_with_a_clean_message(
    exc: BaseException, kind: type, message: str
) -> None:
    error = typed_runtime_error("ce", exc, 3)
    assert type(error) is kind
    assert error is not None and error.backend == "ce"
    assert error.message.endswith(f"a batch of 3: {message}")
    # An input the model cannot take fails the same way on every replica: not retried.
    assert error.retryable is (kind is BackendUnavailable)


def test_a_long_message_is_cut() -> None:
    error = typed_runtime_error("ce", RuntimeError("x" * 5000), 1)
    assert error is not None and len(error.message) < MAX_MESSAGE_CHARS + 50


@pytest.mark.parametrize("exc", [TypeError("bug"), KeyError("token_type_ids"), ValueError("bug")])
def test_a_bug_in_this_code_is_not_disguised(exc: Exception) -> None:
    assert typed_runtime_error("ce", exc, 1) is None


def test_a_batch_that_fails_in_the_runtime_raises_the_typed_error(tiny_model_dir: Path) -> None:
    backend = build_backend("ce", CrossEncoderConfig(model=str(tiny_model_dir), device="cpu"))
    assert isinstance(backend, CrossEncoderBackend)

    def fail(features: Any) -> list[float]:
        raise InvalidArgument("[ONNXRuntimeError] : 2 : INVALID_ARGUMENT : Invalid input name: x")

    backend.forward_batch = fail  # type: ignore[method-assign]
    with pytest.raises(BackendBadRequest, match="ce cannot take a batch of 1: Invalid input name"):
        backend.score_pairs([("a query", "a document")])

    def bug(features: Any) -> list[float]:
        raise KeyError("token_type_ids")

    backend.forward_batch = bug  # type: ignore[method-assign]
    with pytest.raises(KeyError):
        backend.score_pairs([("a query", "a document")])
