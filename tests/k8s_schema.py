"""Kubernetes manifests against the CRDs of ``../shared/k8s-schemas``, offline (the manifest tests
share it: test_k8s.py, test_k8s_rayjob.py, test_podmonitor.py; the ``k8s_schemas`` fixture that
finds the directory is in conftest.py).

A CRD's openAPIV3Schema is checked with ``jsonschema`` as the API server would, with unknown fields
rejected as ``kubectl apply`` (strict field validation) rejects them. What jsonschema cannot
evaluate (the CEL rules under ``x-kubernetes-validations``) is collected by path, so that a test can
assert a manifest leaves those fields unset.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import yaml

#: A KubeRay CRD is a megabyte of YAML: the C parser reads it in a fraction of a second.
_FAST_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
#: Given to ``set_at`` as the value, removes the field instead.
DELETE = object()


def openapi_to_jsonschema(node: Any, path: tuple[str, ...] = (), cel: list | None = None) -> Any:
    """A JSON Schema (draft 4, OpenAPI 3.0's base) that accepts what the API server accepts.

    - ``x-kubernetes-int-or-string: true``: an integer or a string (the pattern checks strings only);
    - ``nullable: true``: null allowed too;
    - an object with ``properties`` and no ``additionalProperties`` rejects unknown fields (as
      ``kubectl apply``'s strict field validation does), unless ``x-kubernetes-preserve-unknown-fields``;
    - other ``x-kubernetes-*`` keys are annotations for the API server and are dropped; the paths of
      ``x-kubernetes-validations`` (CEL rules, which jsonschema cannot run) are appended to ``cel``.
    """
    if isinstance(node, list):
        return [openapi_to_jsonschema(item, path, cel) for item in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "properties":
            out[key] = {
                name: openapi_to_jsonschema(sub, (*path, name), cel) for name, sub in value.items()
            }
        elif key == "items":
            out[key] = openapi_to_jsonschema(value, (*path, "[]"), cel)
        elif key == "additionalProperties" and isinstance(value, dict):
            out[key] = openapi_to_jsonschema(value, (*path, "{}"), cel)
        elif key == "x-kubernetes-validations" and cel is not None:
            cel.append(path)
        elif not key.startswith("x-kubernetes-") and key != "nullable":
            out[key] = openapi_to_jsonschema(value, path, cel)
    if node.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out.setdefault("anyOf", [{"type": "integer"}, {"type": "string"}])
    if node.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    if (
        "properties" in node
        and "additionalProperties" not in node
        and not node.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


FORMATS = jsonschema.FormatChecker()


@FORMATS.checks("int32")
def _is_int32(value: object) -> bool:
    return not isinstance(value, int) or -(2**31) <= value < 2**31


@FORMATS.checks("int64")
def _is_int64(value: object) -> bool:
    return not isinstance(value, int) or -(2**63) <= value < 2**63


def crd_version(crd: dict[str, Any], api_version: str) -> dict[str, Any]:
    """The CRD's version entry for ``api_version`` (group/version). It must be served, and be the
    storage version (what etcd keeps), so that nothing is converted on the way."""
    group, _, version = api_version.partition("/")
    assert crd["spec"]["group"] == group, f"the CRD is for {crd['spec']['group']}, not {group}"
    (entry,) = [v for v in crd["spec"]["versions"] if v["name"] == version]
    assert entry["served"], f"{api_version} is not served by this CRD"
    assert entry["storage"], f"{api_version} is not the CRD's storage version"
    return entry


@dataclass(frozen=True)
class CrdSchema:
    """One version of a CRD as a validator, and the paths carrying CEL rules."""

    validator: jsonschema.Draft4Validator
    cel_paths: list[tuple[str, ...]]


def load_crd_schema(crd_file: Path, api_version: str) -> CrdSchema:
    """The schema of ``api_version`` in the CRD file ``crd_file``, ready to validate manifests."""
    crd = yaml.load(crd_file.read_text(), Loader=_FAST_LOADER)
    entry = crd_version(crd, api_version)
    cel: list[tuple[str, ...]] = []
    schema = openapi_to_jsonschema(entry["schema"]["openAPIV3Schema"], cel=cel)
    jsonschema.Draft4Validator.check_schema(schema)
    return CrdSchema(jsonschema.Draft4Validator(schema, format_checker=FORMATS), cel)


def schema_errors(validator: jsonschema.Draft4Validator, doc: dict[str, Any]) -> list[str]:
    """Every violation as ``path.to.field: message``, sorted."""
    return sorted(
        f"{'.'.join(str(p) for p in e.absolute_path) or '<root>'}: {e.message}"
        for e in validator.iter_errors(doc)
    )


def set_at(doc: Any, path: tuple[Any, ...], value: Any) -> None:
    """Set the field at ``path`` (keys and list indexes) to ``value``; ``DELETE`` removes it."""
    for key in path[:-1]:
        doc = doc[key]
    if value is DELETE:
        del doc[path[-1]]
    else:
        doc[path[-1]] = value


def assert_rejected(
    validator: jsonschema.Draft4Validator, doc: dict[str, Any], path: tuple[Any, ...], value: Any
) -> None:
    """A copy of ``doc`` with ``value`` at ``path`` fails validation, and an error names the field
    broken or, for an unknown or missing field, its parent."""
    broken = copy.deepcopy(doc)
    set_at(broken, path, value)
    where = {tuple(e.absolute_path) for e in validator.iter_errors(broken)}
    assert path in where or path[:-1] in where, f"{path} = {value!r}: errors at {sorted(where)}"


def fields_set(doc: Any, paths: list[tuple[str, ...]]) -> list[tuple[str, ...]]:
    """Those of ``paths`` (as ``openapi_to_jsonschema`` collects them: ``[]`` any list item, ``{}``
    any map value) that ``doc`` sets."""

    def present(node: Any, path: tuple[str, ...]) -> bool:
        if not path:
            return True
        head, rest = path[0], path[1:]
        if head == "[]":
            return isinstance(node, list) and any(present(item, rest) for item in node)
        if head == "{}":
            return isinstance(node, dict) and any(present(v, rest) for v in node.values())
        return isinstance(node, dict) and head in node and present(node[head], rest)

    return [p for p in paths if present(doc, p)]
