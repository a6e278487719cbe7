"""What a local model can take and be served with, checked when the replica loads it, before any
export is built: the configuration alone does not say which architecture a model id is.

A ``max_length`` beyond the positions a model has loads fine and then fails on the first long
document (a tensor-size error, on every replica alike); a runtime that cannot run an architecture
fails when its export is compiled. Both are refused at load, naming the field and the reason.
"""

from __future__ import annotations

from typing import Any

from rerank_core.config import ConfigError, LocalModelConfig

#: Model types whose position ids start after the padding index (RoBERTa's scheme): the first
#: ``pad_token_id + 1`` rows of the position table are never a token's, so XLM-RoBERTa's
#: ``max_position_embeddings`` 514 takes 512 tokens.
OFFSET_POSITIONS = frozenset(
    {
        "camembert",
        "data2vec-text",
        "ibert",
        "mpnet",
        "roberta",
        "roberta-prelayernorm",
        "xlm-roberta",
        "xlm-roberta-xl",
        "xmod",
    }
)


def usable_positions(hf_config: Any) -> int | None:
    """The most tokens one input of a model with Hugging Face config ``hf_config`` can hold: its
    ``max_position_embeddings``, less the offset of RoBERTa-style positions. For relative (DeBERTa)
    and rotary (ModernBERT, Qwen3, Gemma) positions, the same field is the span the model was built
    and trained for. None when the config names no limit."""
    limit = getattr(hf_config, "max_position_embeddings", None)
    if not isinstance(limit, int) or limit <= 0:
        return None
    if getattr(hf_config, "model_type", None) in OFFSET_POSITIONS:
        limit -= (getattr(hf_config, "pad_token_id", None) or 0) + 1
    return limit


def check_max_length(
    name: str, configured: int | None, effective: int | None, hf_config: Any
) -> None:
    """Raise ``ConfigError`` naming ``backends.<name>.max_length`` when ``effective`` (the length
    inputs are truncated to: ``configured``, or the tokenizer's own limit when that is None) is
    more than the model's ``usable_positions``."""
    limit = usable_positions(hf_config)
    if limit is None or effective is None or effective <= limit:
        return
    model_type = getattr(hf_config, "model_type", "this")
    where = f"{configured}" if configured is not None else f"unset, so the tokenizer's {effective}"
    raise ConfigError(
        f"backends.{name}.max_length: {where} is more than the {limit} positions a {model_type} "
        f"model of max_position_embeddings {hf_config.max_position_embeddings} takes; set it to "
        f"at most {limit}",
        field="max_length",
    )


#: (model type, runtime, quantization) combinations that cannot be served, and why.
UNSUPPORTED_RUNTIMES: dict[tuple[str, str, str], str] = {
    ("xlm-roberta", "openvino", "int8-static"): (
        "OpenVINO cannot compile XLM-RoBERTa's graph after NNCF's static quantization (its "
        "constant folding fails); use quantization 'int8' or 'none'"
    ),
}


def check_runtime(name: str, config: LocalModelConfig, hf_config: Any) -> None:
    """Raise ``ConfigError`` naming ``backends.<name>.quantization`` (or ``runtime``) when
    ``config``'s runtime and quantization cannot serve a model of ``hf_config``'s type."""
    model_type = getattr(hf_config, "model_type", None)
    reason = UNSUPPORTED_RUNTIMES.get((str(model_type), config.runtime, config.quantization))
    if reason is None:
        return
    field = "quantization" if config.quantization != "none" else "runtime"
    raise ConfigError(
        f"backends.{name}.{field}: {config.runtime}/{config.quantization} cannot serve the "
        f"{model_type} model {config.model!r}: {reason}",
        field=field,
    )
