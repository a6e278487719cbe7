"""Exports of a local model for the onnx and openvino runtimes, built once and cached on disk.

The whole sentence-transformers pipeline (transformer, and pooling and normalisation for a
bi-encoder) is traced from the loaded torch model into one ONNX graph with ``torch.onnx.export``,
then, per configuration:

- ``onnx`` / ``none``: that graph, run by ONNX Runtime;
- ``onnx`` / ``int8``: the graph after ``onnxruntime.quantization.quantize_dynamic`` (int8
  per-channel weights, activations quantized at run time; no calibration data);
- ``openvino`` / ``none``: the graph converted to OpenVINO IR with fp32 weights;
- ``openvino`` / ``int8``: that IR after ``nncf.compress_weights`` (int8 weights, fp32 activations);
- ``openvino`` / ``int8-static``: that IR after ``nncf.quantize`` (int8 weights and activations,
  each activation's range fixed from calibration batches; the transformer preset of NNCF's
  post-training quantization, as optimum-intel's static quantization uses).

An export lies in ``export_cache_dir``; else beside a local model directory whose parent is
writable; else in ``DEFAULT_EXPORT_CACHE``. Its manifest holds a fingerprint of the model's weights
and pipeline, the runtime, the quantization (with a digest of the calibration batches) and the
library versions; an export whose fingerprint differs from the loaded model's is rebuilt before it
is used, so a replica never runs a stale one.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import shutil
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rerank_core.config import LocalModelConfig

if TYPE_CHECKING:
    import torch

#: Where exports go when neither ``export_cache_dir`` nor a writable model directory is given.
DEFAULT_EXPORT_CACHE = Path.home() / ".cache" / "rerank-service" / "exports"
#: Bumped whenever the export recipe changes, so every earlier export is rebuilt.
EXPORT_FORMAT = 1
#: The distributions whose versions enter the fingerprint, per runtime.
RUNTIME_PACKAGES: dict[str, tuple[str, ...]] = {
    "onnx": ("onnx", "onnxruntime"),
    "openvino": ("onnx", "openvino", "nncf"),
}
_BASE_PACKAGES = ("torch", "transformers", "sentence-transformers")
_MANIFEST = "export.json"
#: The file each runtime loads from an export directory.
MODEL_FILE = {"onnx": "model.onnx", "openvino": "model.xml"}
def cpu_flags() -> frozenset[str] | None:
    """This CPU's feature flags as Linux lists them (``/proc/cpuinfo``); None where unreadable."""
    try:
        return frozenset(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        return None


#: CPU flags (Linux's) of an int8 multiply-add that does not saturate: VNNI, AMX.
_INT8_DOT_FLAGS = frozenset({"avx512_vnni", "avx_vnni", "amx_int8"})


def cpu_has_int8_dot() -> bool:
    """Whether this CPU multiplies int8 without saturating its sums. Without VNNI or AMX, x86
    multiplies u8 by s8 into 16-bit sums that overflow with 8-bit weights: ONNX Runtime's
    dynamic int8 moved the tiny test cross-encoder's logits by up to 2.4 on an AVX2-only CPU,
    and by less than 0.25 with its weights in 7 bits (``reduce_range``), which int8 ONNX exports
    made on such a CPU use. (NNCF's static int8 keeps its default overflow fix, on the first
    layer: extended to every layer it moved the packaged bi-encoder's cosines tenfold.)"""
    flags = cpu_flags()
    return flags is None or bool(flags & _INT8_DOT_FLAGS)


@dataclass(frozen=True, slots=True)
class ExportInfo:
    """An export on disk: its directory, fingerprint, the inputs it takes, and whether this call
    built it (False: a matching export was reused)."""

    directory: Path
    fingerprint: str
    runtime: str
    quantization: str
    input_names: tuple[str, ...]
    built: bool
    seconds: float

    @property
    def model_file(self) -> Path:
        """The file the runtime loads (``model.onnx`` or ``model.xml``)."""
        return self.directory / MODEL_FILE[self.runtime]


def distribution_version(distribution: str) -> str | None:
    """The installed version of ``distribution``; None when it is not installed."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def fingerprint(model: torch.nn.Module, runtime: str, quantization: str, output_key: str) -> str:
    """SHA-256 over what decides an export's content: the recipe version, runtime, quantization,
    output, library versions, the pipeline's description and every weight and buffer."""
    digest = hashlib.sha256()
    versions = {p: distribution_version(p) for p in (*_BASE_PACKAGES, *RUNTIME_PACKAGES[runtime])}
    head = [EXPORT_FORMAT, runtime, quantization, output_key, versions, repr(model)]
    digest.update(json.dumps(head, sort_keys=True).encode())
    for key, tensor in sorted(model.state_dict().items()):
        _hash_tensor(digest, key, tensor)
    return digest.hexdigest()


def _hash_tensor(digest: Any, key: str, tensor: torch.Tensor) -> None:
    """Feed ``key``, ``tensor``'s dtype, shape and bytes into ``digest`` (a hashlib object)."""
    import torch

    digest.update(f"{key}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
    digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy())


def export_directory(name: str, source: str, config: LocalModelConfig) -> Path:
    """Where backend ``name``'s export for its runtime and quantization lives (see the module
    docstring for the order of places)."""
    local = Path(source)
    leaf = f"{local.name or 'model'}-{config.runtime}-{config.quantization}"
    beside = local.is_dir() and not config.model.startswith("packaged:") and os.access(local.parent, os.W_OK)
    if config.export_cache_dir is None and beside:
        return local.parent / f"{local.name}.exports" / leaf
    # A cache shared by many models: the source's full path keeps two of one name apart.
    where = str(local.resolve()) if local.is_dir() else source
    leaf += "-" + hashlib.sha256(where.encode()).hexdigest()[:8]
    return Path(config.export_cache_dir or DEFAULT_EXPORT_CACHE) / leaf


def read_manifest(directory: Path) -> dict[str, Any] | None:
    """The manifest of the export in ``directory``; None when there is none or it is unreadable."""
    try:
        manifest = json.loads((directory / _MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) else None


def calibration_digest(batches: Sequence[Mapping[str, Any]]) -> str:
    """A digest of calibration batches (each the model's preprocessed features)."""
    digest = hashlib.sha256()
    for batch in batches:
        for key in sorted(batch):
            value = batch[key]
            if hasattr(value, "detach"):  # the model's tensors; preprocess may add other entries
                _hash_tensor(digest, key, value)
    return digest.hexdigest()[:16]


def ensure_export(
    model: torch.nn.Module,
    sample: Mapping[str, Any],
    output_key: str,
    runtime: str,
    quantization: str,
    directory: Path,
    calibration: Sequence[Mapping[str, Any]] = (),
) -> ExportInfo:
    """The export of ``model`` in ``directory``: reused when its manifest's fingerprint matches,
    else built (``sample``: the model's preprocessed features for a small batch, which name the
    inputs and trace the graph) into a temporary directory and moved into place.
    ``calibration``: preprocessed batches for ``int8-static``, whose digest enters the fingerprint
    (other calibration text, another export)."""
    started = time.perf_counter()
    recipe = quantization
    seven_bit = runtime == "onnx" and quantization == "int8" and not cpu_has_int8_dot()
    if seven_bit:
        recipe += ":7-bit-weights"
    if quantization == "int8-static":
        if not calibration:
            raise ValueError("int8-static quantization needs calibration batches")
        recipe += ":" + calibration_digest(calibration)
    wanted = fingerprint(model, runtime, recipe, output_key)
    manifest = read_manifest(directory)
    if (
        manifest is not None
        and manifest.get("fingerprint") == wanted
        and (directory / MODEL_FILE[runtime]).is_file()
    ):
        names = tuple(manifest["input_names"])
        return ExportInfo(directory, wanted, runtime, quantization, names, False, 0.0)
    directory.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=directory.parent, prefix=f".{directory.name}-") as tmp:
        staging = Path(tmp) / "export"
        staging.mkdir()
        input_names = _build(
            model, sample, output_key, runtime, quantization, staging, calibration, seven_bit
        )
        (staging / _MANIFEST).write_text(
            json.dumps(
                {
                    "fingerprint": wanted,
                    "runtime": runtime,
                    "quantization": quantization,
                    "output_key": output_key,
                    "input_names": list(input_names),
                    "format": EXPORT_FORMAT,
                },
                indent=2,
            )
        )
        current = read_manifest(directory)
        if current is not None and current.get("fingerprint") == wanted:
            # Another replica finished the same export meanwhile: keep its copy, which it may be
            # loading now.
            return ExportInfo(directory, wanted, runtime, quantization, input_names, False, 0.0)
        if directory.exists():
            shutil.rmtree(directory)
        staging.rename(directory)
    seconds = time.perf_counter() - started
    return ExportInfo(directory, wanted, runtime, quantization, input_names, True, seconds)


def _build(
    model: torch.nn.Module,
    sample: Mapping[str, Any],
    output_key: str,
    runtime: str,
    quantization: str,
    out: Path,
    calibration: Sequence[Mapping[str, Any]] = (),
    seven_bit: bool = False,
) -> tuple[str, ...]:
    import torch

    traced = tuple(k for k, v in sample.items() if isinstance(v, torch.Tensor))
    onnx_path = out / ("model.onnx" if runtime == "onnx" and quantization == "none" else "traced.onnx")
    _trace_to_onnx(model, sample, traced, output_key, onnx_path)
    # The export drops inputs the model never reads (a DeBERTa-v3 without token types ignores
    # token_type_ids): the graph, not the preprocessed features, says what it takes.
    names = graph_input_names(onnx_path)
    if runtime == "onnx" and quantization == "int8":
        from onnxruntime.quantization import QuantType, quantize_dynamic

        quantize_dynamic(
            onnx_path,
            out / "model.onnx",
            per_channel=True,
            reduce_range=seven_bit,
            weight_type=QuantType.QInt8,
        )
    elif runtime == "openvino":
        import openvino

        ov_model = openvino.convert_model(onnx_path)
        if quantization == "int8":
            import nncf

            ov_model = nncf.compress_weights(ov_model, mode=nncf.CompressWeightsMode.INT8_ASYM)
        elif quantization == "int8-static":
            import nncf

            feeds = [{n: batch[n].detach().cpu().numpy() for n in names} for batch in calibration]
            ov_model = nncf.quantize(
                ov_model,
                nncf.Dataset(feeds),
                model_type=nncf.ModelType.TRANSFORMER,
                subset_size=len(feeds),
            )
        openvino.save_model(ov_model, out / "model.xml", compress_to_fp16=False)
    if onnx_path.name == "traced.onnx":
        onnx_path.unlink()
    return names


def graph_input_names(onnx_path: Path) -> tuple[str, ...]:
    """The inputs of the ONNX graph in ``onnx_path``, in order (its weights are not read)."""
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    weights = {init.name for init in graph.initializer}
    return tuple(i.name for i in graph.input if i.name not in weights)


def _positional(model: torch.nn.Module, names: tuple[str, ...], output_key: str) -> torch.nn.Module:
    """The module ``torch.onnx.export`` traces: the pipeline with positional tensors in (named by
    ``names``) and its ``output_key`` out."""
    import torch

    class Pipeline(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
            return self.model(dict(zip(names, tensors, strict=True)))[output_key]

    return Pipeline().eval()


def _trace_to_onnx(
    model: torch.nn.Module,
    sample: Mapping[str, Any],
    names: tuple[str, ...],
    output_key: str,
    path: Path,
) -> None:
    import torch

    axes: dict[str, dict[int, str]] = {n: {0: "batch", 1: "sequence"} for n in names}
    axes["output"] = {0: "batch"}
    with torch.inference_mode(False), torch.no_grad():
        torch.onnx.export(
            _positional(model, names, output_key),
            tuple(sample[n] for n in names),
            str(path),
            input_names=list(names),
            output_names=["output"],
            dynamic_axes=axes,
            opset_version=17,
            dynamo=False,
        )
