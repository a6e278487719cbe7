"""The configuration reference (docs/configuration.md), written from the schema itself: every
field of every section with its type, default, bounds and description, so each default is stated
once, in code. ``python -m rerank_core.config.reference > docs/configuration.md`` regenerates it;
a test fails when the page and the schema drift apart."""

from __future__ import annotations

import sys
import types
import typing
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from rerank_core.config.api import CohereConfig, JinaConfig, LLMConfig, VoyageConfig
from rerank_core.config.local import (
    BiEncoderConfig,
    CausalLMConfig,
    CrossEncoderConfig,
    LocalModelConfig,
    ServingConfig,
)
from rerank_core.config.service import (
    AuthConfig,
    BreakerConfig,
    LimitsConfig,
    RouteConfig,
    RouterConfig,
    ServiceConfig,
)

#: The sections in the page's order: (heading, where it sits in the configuration, model).
SECTIONS: list[tuple[str, str, type[BaseModel]]] = [
    ("Service", "the application's `args.service`", ServiceConfig),
    ("Routes", "`routes.<name>`", RouteConfig),
    ("Router", "`router`", RouterConfig),
    ("Limits", "`limits`", LimitsConfig),
    ("Authentication", "`auth`", AuthConfig),
    ("Circuit breaker", "`breaker`", BreakerConfig),
    ("Every local model", "`backends.<name>` of a local type", LocalModelConfig),
    ("Cross-encoder", "`backends.<name>` with `type: cross_encoder`", CrossEncoderConfig),
    ("Bi-encoder", "`backends.<name>` with `type: bi_encoder`", BiEncoderConfig),
    ("Causal LM (yes/no)", "`backends.<name>` with `type: causal_lm`", CausalLMConfig),
    ("Serving a local model", "`backends.<name>.serving`", ServingConfig),
    ("Cohere", "`backends.<name>` with `type: cohere`", CohereConfig),
    ("Jina", "`backends.<name>` with `type: jina`", JinaConfig),
    ("Voyage", "`backends.<name>` with `type: voyage`", VoyageConfig),
    ("OpenAI-compatible chat model", "`backends.<name>` with `type: llm`", LLMConfig),
]

HEADER = """\
# Configuration reference

Generated from the schema (`rerank_core/config/`) by `python -m rerank_core.config.reference`;
do not edit by hand: a test fails when this page and the code differ. Every field is validated at
start-up, and a bad one stops the service with its path (`backends.cohere.timeout_s: ...`).
A local model section lists the fields of "Every local model" plus its own.
"""


def type_name(annotation: Any) -> str:
    """A field's type as a reader writes it: ``int | None``, ``list[str]``, ``"a" | "b"``."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Literal:
        return " \\| ".join(f'"{a}"' for a in args)
    if origin in (typing.Union, types.UnionType):
        return " \\| ".join(type_name(a) for a in args)
    if origin is typing.Annotated:
        return type_name(args[0])
    if origin is not None:
        inner = ", ".join(type_name(a) for a in args)
        return f"{getattr(origin, '__name__', str(origin))}[{inner}]"
    if annotation is type(None):
        return "None"
    return getattr(annotation, "__name__", str(annotation))


def default_text(field: FieldInfo) -> str:
    if field.default_factory is not None:
        value = field.default_factory()  # type: ignore[call-arg]
        return "(default)" if isinstance(value, BaseModel) else f"`{value!r}`"
    if field.default is PydanticUndefined:
        return "required"
    if isinstance(field.default, BaseModel):
        return "(default)"
    return f"`{field.default!r}`"


def bounds_text(field: FieldInfo) -> str:
    """The field's numeric and length bounds (``>= 1``, ``> 0``)."""
    out = []
    for item in field.metadata:
        for attr, sign in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<"), ("min_length", "len >=")):
            value = getattr(item, attr, None)
            if value is not None:
                out.append(f"{sign} {value}")
    return ", ".join(out)


def own_fields(model: type[BaseModel]) -> dict[str, FieldInfo]:
    """The fields of ``model``; a local model type's without those it shares unchanged with every
    local model."""
    if model is LocalModelConfig or not issubclass(model, LocalModelConfig):
        return dict(model.model_fields)
    shared = LocalModelConfig.model_fields
    return {
        name: field
        for name, field in model.model_fields.items()
        if name not in shared
        or (field.annotation, field.default, field.description)
        != (shared[name].annotation, shared[name].default, shared[name].description)
    }


def render() -> str:
    """The whole page."""
    lines = [HEADER]
    for heading, where, model in SECTIONS:
        lines += [f"## {heading}", "", f"Where: {where}.", ""]
        if model.__doc__:
            lines += [" ".join(model.__doc__.split()).replace("``", "`"), ""]
        lines += ["| field | type | default | bounds | meaning |", "|---|---|---|---|---|"]
        for name, field in own_fields(model).items():
            meaning = " ".join((field.description or "").split()).replace("|", "\\|")
            meaning = meaning.replace("``", "`")
            lines.append(
                f"| `{name}` | {type_name(field.annotation)} | {default_text(field)} | "
                f"{bounds_text(field)} | {meaning} |"
            )
        lines.append("")
    return "\n".join(lines)


def undocumented() -> list[str]:
    """Fields without a description, as ``Section.field``: each must say what it does."""
    return [
        f"{model.__name__}.{name}"
        for _, _, model in SECTIONS
        for name, field in own_fields(model).items()
        if not (field.description or "").strip()
    ]


if __name__ == "__main__":
    sys.stdout.write(render())
