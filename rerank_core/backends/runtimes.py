"""Optimized CPU runtimes: a local model run by ONNX Runtime or OpenVINO on its cached export.

``load_runtime`` finds or builds the export (``rerank_core.backends.exports``) and loads it;
``ExportedModel`` takes the model's preprocessed features and returns what the traced pipeline
returns (a cross-encoder's scores, a bi-encoder's sentence embeddings). Only the chosen runtime's
libraries are imported, and only when it is chosen.

sentence-transformers' own ``backend="onnx"|"openvino"`` goes through Optimum, and no release of
``optimum-onnx`` (0.1.0: transformers<4.58) or ``optimum-intel`` (2.2.0: fails to import with
transformers 5.24) works with the transformers 5 this project runs, so the export is done with the
runtimes' own libraries.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from rerank_core.backends.batching import on_device
from rerank_core.backends.exports import (
    RUNTIME_PACKAGES,
    ExportInfo,
    distribution_version,
    ensure_export,
    export_directory,
)
from rerank_core.config import ConfigError, LocalModelConfig
from rerank_core.errors import BackendUnavailable

if TYPE_CHECKING:
    import torch

_EXTRA = {"onnx": "onnx", "openvino": "openvino"}
#: Inputs per calibration batch of ``int8-static``: batches of mixed lengths, as traffic pads them.
CALIBRATION_BATCH = 8


def check_installed(name: str, runtime: str) -> None:
    """Raise ``ConfigError`` naming ``backends.<name>.runtime`` when ``runtime``'s libraries are
    missing."""
    missing = [p for p in RUNTIME_PACKAGES[runtime] if not distribution_version(p)]
    if missing:
        raise ConfigError(
            f"backends.{name}.runtime: {runtime!r} needs {', '.join(missing)} "
            f"(pip install 'rerank-service[{_EXTRA[runtime]}]')",
            field="runtime",
        )


class ExportedModel:
    """An export loaded into its runtime: preprocessed features in, the traced output out.

    ``threads``: the runtime's intra-op threads (the same number torch uses in this process);
    ``bf16``: OpenVINO computes in bfloat16 (``cpu_dtype``), else in float32; ``streams``:
    OpenVINO's streams (None: its throughput hint chooses, 1: its latency hint). ``streams`` (1
    with ONNX Runtime) calls may run at once, from as many threads: each OpenVINO call takes an
    infer request of its own.
    """

    def __init__(
        self, info: ExportInfo, threads: int, *, bf16: bool = False, streams: int | None = None
    ) -> None:
        self.info = info
        #: Calls that may run at once, each on its stream's share of ``threads``.
        self.streams = 1
        if info.runtime == "onnx":
            self._run, names = self._load_onnx(info, threads)
        else:
            self._run, names, self.streams = self._load_openvino(info, threads, bf16, streams)
        #: The inputs the loaded graph takes, read from the graph itself: an export built before
        #: its manifest recorded them may list a feature (token_type_ids) the graph dropped.
        self.input_names: tuple[str, ...] = tuple(names)

    @staticmethod
    def _load_onnx(info: ExportInfo, threads: int) -> tuple[Any, list[str]]:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        session = onnxruntime.InferenceSession(
            str(info.model_file), options, providers=["CPUExecutionProvider"]
        )
        names = [i.name for i in session.get_inputs()]
        return (lambda feeds: session.run(None, feeds)[0]), names

    @staticmethod
    def _load_openvino(
        info: ExportInfo, threads: int, bf16: bool, streams: int | None
    ) -> tuple[Any, list[str], int]:
        import queue

        import numpy as np
        import openvino

        # Always named: by default OpenVINO computes in bf16 on CPUs that have it, a precision
        # change only ``cpu_dtype: bfloat16`` asks for. The export itself stays float32.
        precision = "bf16" if bf16 else "f32"
        properties: dict[str, Any] = {
            "INFERENCE_NUM_THREADS": threads,
            "INFERENCE_PRECISION_HINT": precision,
            "PERFORMANCE_HINT": "LATENCY" if streams == 1 else "THROUGHPUT",
        }
        if streams is not None and streams > 1:
            properties["NUM_STREAMS"] = streams
        compiled = openvino.Core().compile_model(str(info.model_file), "CPU", properties)
        count = max(1, int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))
        idle: queue.SimpleQueue[Any] = queue.SimpleQueue()
        for _ in range(count):
            idle.put(compiled.create_infer_request())

        def run(feeds: dict[str, Any]) -> Any:
            request = idle.get()
            try:
                # The request reuses its output buffer: copy before its next call overwrites it.
                return np.array(request.infer(feeds)[0], copy=True)
            finally:
                idle.put(request)

        return run, [port.get_any_name() for port in compiled.inputs], count

    def __call__(self, features: Mapping[str, Any]) -> torch.Tensor:
        """The output for ``features``: numpy arrays (as the engine collates them) or CPU
        tensors."""
        import numpy as np
        import torch

        feeds = {n: np.asarray(features[n]) for n in self.input_names}
        return torch.from_numpy(self._run(feeds))


def load_runtime(
    name: str,
    model: torch.nn.Module,
    source: str,
    config: LocalModelConfig,
    output_key: str,
    sample_inputs: list[Any],
    calibration_inputs: list[Any] | None = None,
) -> ExportedModel:
    """Backend ``name``'s model in its configured runtime, exported first when no current export
    is cached. ``model``: the loaded sentence-transformers model (on CPU); ``source``: the
    directory or id it was loaded from; ``sample_inputs``: a small batch of the model's inputs
    (texts or pairs) to trace with; ``calibration_inputs``: inputs like the traffic, for
    ``int8-static`` (batched by ``CALIBRATION_BATCH``)."""
    import torch

    check_installed(name, config.runtime)
    sample = model.preprocess(sample_inputs)
    calibration = []
    if config.quantization == "int8-static" and calibration_inputs:
        calibration = [
            model.preprocess(calibration_inputs[i : i + CALIBRATION_BATCH])
            for i in range(0, len(calibration_inputs), CALIBRATION_BATCH)
        ]
    directory = export_directory(name, source, config)
    try:
        info = ensure_export(
            model, sample, output_key, config.runtime, config.quantization, directory, calibration
        )
        return ExportedModel(
            info,
            torch.get_num_threads(),
            bf16=config.cpu_dtype == "bfloat16",
            streams=config.streams,
        )
    except (OSError, RuntimeError, ValueError) as exc:
        raise BackendUnavailable(
            f"cannot export {config.model!r} for {name} to {config.runtime}/{config.quantization} "
            f"in {directory}: {type(exc).__name__}: {exc}",
            backend=name,
            field="runtime",
        ) from exc


def model_output(
    exported: ExportedModel | None,
    model: torch.nn.Module,
    features: Mapping[str, Any],
    device: str,
    output_key: str,
) -> torch.Tensor:
    """One pass of a sentence-transformers model over a padded batch: its ``output_key`` as
    float32, from the export in its runtime where there is one, else from ``model`` on
    ``device``."""
    if exported is not None:
        return exported(features).float()
    return model(on_device(features, device))[output_key].float()
