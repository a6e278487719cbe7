"""Deployment artefacts: k8s/rayservice.yaml against the RayService CRD and the service configuration,
k8s/secret.example.yaml against the manifest.

The CRD's openAPIV3Schema is checked as the API server would, unknown fields rejected
(tests/k8s_schema.py); what it cannot evaluate (the CEL rules) is asserted unused by the manifest.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from rerank_core.admission import model_queues
from rerank_core.attempts import attempt_timeout
from rerank_core.config import LOCAL_TYPES, PACKAGED_MINILM, ServiceConfig, load_config
from tests.k8s_schema import CrdSchema, assert_rejected, fields_set, load_crd_schema, schema_errors

REPO = Path(__file__).resolve().parents[1]
MANIFEST = REPO / "k8s" / "rayservice.yaml"
SECRET_EXAMPLE = REPO / "k8s" / "secret.example.yaml"
SERVE_CONFIG = REPO / "serve_config.yaml"
RAYSERVICE_CRD = "ray.io_rayservices.yaml"
#: The one backend the manifest adds to serve_config.yaml.
GPU_BACKEND = "msmarco"


# --- The documents ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def manifest() -> dict[str, Any]:
    return yaml.safe_load(MANIFEST.read_text())


@pytest.fixture(scope="module")
def serve_v2(manifest: dict[str, Any]) -> dict[str, Any]:
    """The manifest's ``spec.serveConfigV2``, parsed."""
    return yaml.safe_load(manifest["spec"]["serveConfigV2"])


@pytest.fixture(scope="module")
def serve_local() -> dict[str, Any]:
    """serve_config.yaml, the embedded local default."""
    return yaml.safe_load(SERVE_CONFIG.read_text())


def only_app(serve_config: dict[str, Any]) -> dict[str, Any]:
    (app,) = serve_config["applications"]
    return app


@pytest.fixture(scope="module")
def k8s_service(serve_v2: dict[str, Any]) -> ServiceConfig:
    return load_config(only_app(serve_v2)["args"]["service"])


@pytest.fixture(scope="module")
def local_service(serve_local: dict[str, Any]) -> ServiceConfig:
    return load_config(only_app(serve_local)["args"]["service"])


def cluster(manifest: dict[str, Any]) -> dict[str, Any]:
    """The Ray cluster's spec: a RayService's ``rayClusterConfig``, a RayJob's ``rayClusterSpec``."""
    return manifest["spec"]["rayClusterSpec" if manifest["kind"] == "RayJob" else "rayClusterConfig"]


def groups(manifest: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(group name, group spec) of the head group and every worker group."""
    yield "head", cluster(manifest)["headGroupSpec"]
    for group in cluster(manifest)["workerGroupSpecs"]:
        yield group["groupName"], group


def ray_container(group: dict[str, Any]) -> dict[str, Any]:
    # KubeRay runs Ray in the Pod template's first container.
    return group["template"]["spec"]["containers"][0]


def gpus(group: dict[str, Any]) -> int:
    return int(ray_container(group).get("resources", {}).get("limits", {}).get("nvidia.com/gpu", 0))


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env", [])}


# --- Schema -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def crd_schema(k8s_schemas: Path, manifest: dict[str, Any]) -> CrdSchema:
    return load_crd_schema(k8s_schemas / RAYSERVICE_CRD, manifest["apiVersion"])


def test_manifest_is_a_valid_rayservice(crd_schema: CrdSchema, manifest: dict[str, Any]) -> None:
    assert manifest["apiVersion"] == "ray.io/v1" and manifest["kind"] == "RayService"
    assert schema_errors(crd_schema.validator, manifest) == []


_WORKER = ("spec", "rayClusterConfig", "workerGroupSpecs", 0)
_GPU_LIMIT = (*_WORKER, "template", "spec", "containers", 0, "resources", "limits", "nvidia.com/gpu")
BROKEN: dict[str, tuple[tuple[Any, ...], Any]] = {
    "a count given as a word": ((*_WORKER, "maxReplicas"), "four"),
    "a misspelt field": ((*_WORKER, "minReplica"), 1),
    "a quantity that is no quantity": (_GPU_LIMIT, "one GPU"),
    "an auth mode the enum lacks": (("spec", "rayClusterConfig", "authOptions", "mode"), "tokens"),
    "an int32 overflow": ((*_WORKER, "maxReplicas"), 2**31),
    "serveConfigV2 as a mapping, not a string": (("spec", "serveConfigV2"), {"applications": []}),
    "rayStartParams values must be strings": (
        ("spec", "rayClusterConfig", "headGroupSpec", "rayStartParams", "num-cpus"),
        0,
    ),
    "a GCS fault tolerance option the CRD lacks": (
        ("spec", "rayClusterConfig", "gcsFaultToleranceOptions", "redisAdress"),
        "redis:6379",
    ),
    "a Redis address given as a mapping": (
        ("spec", "rayClusterConfig", "gcsFaultToleranceOptions", "redisAddress"),
        {"host": "redis", "port": 6379},
    ),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_schema_validation_rejects_a_broken_manifest(
    crd_schema: CrdSchema, manifest: dict[str, Any], case: str
) -> None:
    path, value = BROKEN[case]
    assert_rejected(crd_schema.validator, manifest, path, value)


def test_manifest_sets_no_field_guarded_by_cel_rules(
    crd_schema: CrdSchema, manifest: dict[str, Any]
) -> None:
    assert crd_schema.cel_paths, "the CRD has CEL rules; their paths should have been collected"
    assert fields_set(manifest, crd_schema.cel_paths) == []


# --- serveConfigV2: the same application as serve_config.yaml, with GPU values -----------------


def test_serve_configs_are_valid_serve_deploy_configs(
    serve_v2: dict[str, Any], serve_local: dict[str, Any]
) -> None:
    from ray.serve.schema import DeploymentSchema, ServeApplicationSchema, ServeDeploySchema

    def unknown(model: Any, mapping: dict[str, Any]) -> set[str]:
        return set(mapping) - set(model.model_fields)

    for config in (serve_v2, serve_local):
        ServeDeploySchema.model_validate(config)
        # Serve's schema ignores unknown keys, so a misspelt option would silently do nothing.
        assert unknown(ServeDeploySchema, config) == set()
        for app in config["applications"]:
            assert unknown(ServeApplicationSchema, app) == set()
            for deployment in app.get("deployments", []):
                assert unknown(DeploymentSchema, deployment) == set()


def test_same_application_as_serve_config(
    serve_v2: dict[str, Any], serve_local: dict[str, Any]
) -> None:
    k8s, local = only_app(serve_v2), only_app(serve_local)
    for key in ("name", "route_prefix", "import_path"):
        assert k8s[key] == local[key], key
    assert k8s["import_path"] == "deployments.app:build_app"


def test_backends_and_routes_differ_only_by_the_gpu_model(
    k8s_service: ServiceConfig, local_service: ServiceConfig
) -> None:
    assert set(k8s_service.backends) - set(local_service.backends) == {GPU_BACKEND}
    assert set(local_service.backends) - set(k8s_service.backends) == set()
    assert set(k8s_service.routes) == set(local_service.routes)
    assert k8s_service.default_route == local_service.default_route
    for name, cfg in local_service.backends.items():
        theirs = k8s_service.backends[name]
        assert (theirs.type, theirs.model) == (cfg.type, cfg.model), name


def test_gpu_model_is_served_on_gpus_with_autoscaling(k8s_service: ServiceConfig) -> None:
    cfg = k8s_service.backends[GPU_BACKEND]
    assert cfg.type == "cross_encoder" and cfg.model == "cross-encoder/ms-marco-MiniLM-L-6-v2"
    s = cfg.serving
    assert s.num_gpus >= 1
    assert 1 <= s.min_replicas < s.max_replicas
    assert s.max_batch_size == 128 and s.max_ongoing_requests >= s.max_batch_size


def test_default_route_tries_a_gpu_model_then_the_packaged_minilm(k8s_service: ServiceConfig) -> None:
    _, route = k8s_service.resolve_route(None)
    first = k8s_service.backends[route.backends[0]]
    assert first.type in LOCAL_TYPES and first.serving.num_gpus >= 1
    fallbacks = [k8s_service.backends[b] for b in route.backends[1:]]
    assert any(
        f.type == "bi_encoder" and f.model == PACKAGED_MINILM and f.serving.num_gpus == 0
        for f in fallbacks
    )


def test_serve_listens_on_every_node_on_the_serve_port(
    serve_v2: dict[str, Any], manifest: dict[str, Any]
) -> None:
    # HeadOnly would leave no proxy on the GPU workers, whose readiness KubeRay ties to it.
    assert serve_v2.get("proxy_location", "EveryNode") == "EveryNode"
    http = serve_v2["http_options"]
    assert http["host"] == "0.0.0.0"
    for name, group in groups(manifest):
        ports = {p.get("name"): p["containerPort"] for p in ray_container(group).get("ports", [])}
        # KubeRay's <name>-serve-svc and its proxy probe target the container port named "serve".
        assert ports.get("serve") == http["port"] == 8000, name


def _built_deployments(service: dict[str, Any], workdir: Path) -> dict[str, Any]:
    """Deployment name -> its options, as ``serve build`` (Serve's public CLI, which names the
    deployments of an application graph without starting Ray) writes them for what
    ``deployments.app.build_app`` builds."""
    (workdir / "service.json").write_text(json.dumps(service))
    (workdir / "app_under_test.py").write_text(
        "from deployments.app import build_app\n"
        f"app = build_app({{'config_file': {str(workdir / 'service.json')!r}}})\n"
    )
    serve_cli = Path(sys.executable).with_name("serve")
    out = workdir / "built.yaml"
    subprocess.run(
        [str(serve_cli), "build", "--app-dir", str(workdir), "-o", str(out), "app_under_test:app"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        env={**os.environ, "RAY_AUTH_MODE": "disabled"},
    )
    (app,) = yaml.safe_load(out.read_text())["applications"]
    return {d["name"]: d for d in app["deployments"]}


def test_deployment_names_match_between_serve_config_and_manifest(
    serve_v2: dict[str, Any], serve_local: dict[str, Any], tmp_path: Path
) -> None:
    from deployments.app import model_deployment_name

    k8s = _built_deployments(only_app(serve_v2)["args"]["service"], tmp_path)
    local = _built_deployments(only_app(serve_local)["args"]["service"], tmp_path)

    assert set(local) == {model_deployment_name("minilm"), "Router"}
    assert set(local) < set(k8s)
    assert set(k8s) - set(local) == {model_deployment_name(GPU_BACKEND)}
    # A `deployments:` override naming no deployment of the application fails the deploy.
    for config, names in ((serve_v2, k8s), (serve_local, local)):
        overrides = {d["name"] for d in only_app(config).get("deployments", [])}
        assert overrides <= set(names), overrides - set(names)

    gpu = k8s[model_deployment_name(GPU_BACKEND)]
    assert gpu["ray_actor_options"]["num_gpus"] >= 1
    scaling = gpu["autoscaling_config"]
    assert scaling["min_replicas"] < scaling["max_replicas"]


def test_auth_enabled_with_keys_from_secrets(
    k8s_service: ServiceConfig, manifest: dict[str, Any]
) -> None:
    assert k8s_service.auth.enabled
    vendor_envs = {
        cfg.api_key_env for cfg in k8s_service.backends.values() if cfg.type not in LOCAL_TYPES
    }
    assert vendor_envs == {"CO_API_KEY", "JINA_API_KEY", "VOYAGE_API_KEY", "OPENAI_API_KEY"}
    for name, group in groups(manifest):
        env = env_of(ray_container(group))
        service_keys = env[k8s_service.auth.api_keys_env]["valueFrom"]["secretKeyRef"]
        assert not service_keys.get("optional", False), name
        for var in vendor_envs:
            assert env[var]["valueFrom"]["secretKeyRef"]["optional"] is True, (name, var)
        assert not [v for v in env.values() if "KEY" in v["name"] and "value" in v], name


def test_ray_token_auth_is_on_and_left_to_kuberay(manifest: dict[str, Any]) -> None:
    auth = cluster(manifest)["authOptions"]
    assert auth["mode"] == "token" and auth["secretName"]
    for name, group in groups(manifest):
        # KubeRay sets RAY_AUTH_MODE/RAY_AUTH_TOKEN itself; a value here would fight it.
        assert not {"RAY_AUTH_MODE", "RAY_AUTH_TOKEN"} & set(env_of(ray_container(group))), name


def test_gpu_replicas_land_on_gpu_workers_that_autoscale(
    manifest: dict[str, Any], k8s_service: ServiceConfig
) -> None:
    rc = cluster(manifest)
    assert rc["enableInTreeAutoscaling"] is True and rc["autoscalerOptions"]
    head = rc["headGroupSpec"]
    assert head["rayStartParams"]["num-cpus"] == "0" and gpus(head) == 0
    ports = {p["containerPort"] for p in ray_container(head)["ports"]}
    assert {6379, 8265, 8000} <= ports
    gpu_groups = [g for g in rc["workerGroupSpecs"] if gpus(g) >= 1]
    assert gpu_groups, "no worker group asks for nvidia.com/gpu"
    models = [c.serving for c in k8s_service.backends.values() if c.type in LOCAL_TYPES]
    # Pods enough for every GPU replica at the top of the autoscaling range, and at its bottom.
    assert sum(g["maxReplicas"] * gpus(g) for g in gpu_groups) >= sum(
        s.max_replicas * s.num_gpus for s in models
    )
    assert sum(g["minReplicas"] * gpus(g) for g in gpu_groups) >= sum(
        s.min_replicas * s.num_gpus for s in models
    )
    for g in gpu_groups:
        assert g["minReplicas"] < g["maxReplicas"]


def test_probes_left_to_kuberay_and_one_image(manifest: dict[str, Any]) -> None:
    images = set()
    for name, group in groups(manifest):
        container = ray_container(group)
        # KubeRay injects the serve-aware probes only where none is given.
        assert "readinessProbe" not in container and "livenessProbe" not in container, name
        images.add(container["image"])
    # The Serve controller on the head imports the application too: one image everywhere.
    assert len(images) == 1


def test_secret_example_has_every_required_key_with_fake_values(manifest: dict[str, Any]) -> None:
    secrets = {
        doc["metadata"]["name"]: doc["stringData"]
        for doc in yaml.safe_load_all(SECRET_EXAMPLE.read_text())
        if doc["kind"] == "Secret"
    }
    for name, group in groups(manifest):
        for var in env_of(ray_container(group)).values():
            ref = var.get("valueFrom", {}).get("secretKeyRef")
            if ref and not ref.get("optional", False):
                assert ref["key"] in secrets.get(ref["name"], {}), (name, var["name"])
    assert "auth_token" in secrets[cluster(manifest)["authOptions"]["secretName"]]
    for values in secrets.values():
        assert all("REPLACE-ME" in v and "fake" in v for v in values.values())


# --- Faults: failure detection, GCS fault tolerance, attempts bound by their work ------------


def test_gcs_is_kept_in_redis_with_address_and_password_from_a_secret(
    manifest: dict[str, Any],
) -> None:
    rc = cluster(manifest)
    ft = rc["gcsFaultToleranceOptions"]
    # The CRD takes the address as a string; Kubernetes expands "$(VAR)" from the head
    # container's variables defined before KubeRay's RAY_REDIS_ADDRESS, which it appends.
    head_env = env_of(ray_container(rc["headGroupSpec"]))
    assert ft["redisAddress"].startswith("$(") and ft["redisAddress"].endswith(")")
    address_var = ft["redisAddress"][2:-1]
    assert head_env[address_var]["valueFrom"]["secretKeyRef"]["name"]
    assert ft["redisPassword"]["valueFrom"]["secretKeyRef"]["key"]
    # KubeRay refuses these beside gcsFaultToleranceOptions (it sets them itself).
    assert not {"RAY_REDIS_ADDRESS", "REDIS_PASSWORD", "REDIS_USERNAME"} & set(head_env)
    assert "redis-password" not in rc["headGroupSpec"]["rayStartParams"]
    assert "ray.io/ft-enabled" not in manifest["metadata"].get("annotations", {})
    secrets = {
        doc["metadata"]["name"]: doc["stringData"]
        for doc in yaml.safe_load_all(SECRET_EXAMPLE.read_text())
        if doc["kind"] == "Secret"
    }
    for ref in (head_env[address_var]["valueFrom"]["secretKeyRef"],
                ft["redisPassword"]["valueFrom"]["secretKeyRef"]):  # fmt: skip
        assert ref["key"] in secrets[ref["name"]], ref


def test_node_failure_detection_is_explicit_and_takes_seconds(manifest: dict[str, Any]) -> None:
    for name, group in groups(manifest):
        env = env_of(ray_container(group))
        period = int(env["RAY_health_check_period_ms"]["value"])
        timeout = int(env["RAY_health_check_timeout_ms"]["value"])
        threshold = int(env["RAY_health_check_failure_threshold"]["value"])
        # A lost node is declared dead after about threshold checks; Ray's defaults take 15 s+.
        assert threshold * period <= 10_000 and timeout <= 5_000, name
        assert threshold >= 2, name


@pytest.mark.parametrize("which", ["k8s", "local"])
def test_default_route_bounds_attempts_by_their_work(
    which: str, k8s_service: ServiceConfig, local_service: ServiceConfig
) -> None:
    service = k8s_service if which == "k8s" else local_service
    _, route = service.resolve_route(None)
    deadline = service.limits.request_timeout_s
    for name in route.backends:
        cfg = service.backends[name]
        assert cfg.type in LOCAL_TYPES and cfg.serving.pairs_per_s, name
        queue = model_queues(service)[name]
        # A small request on a lost replica is retried within seconds ...
        assert attempt_timeout(route, 10, queue) <= 5, name
        # ... while the largest request allowed keeps its expected time, up to its deadline.
        largest = service.limits.max_documents
        assert attempt_timeout(route, largest, queue) >= min(
            largest / cfg.serving.pairs_per_s, deadline
        ), name
