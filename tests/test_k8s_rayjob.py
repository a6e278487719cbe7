"""k8s/rayjob.yaml, the batch job (``rerank-batch`` on a KubeRay RayJob): the RayJob against the RayJob
CRD (tests/k8s_schema.py) and KubeRay's own checks, its entrypoint against the Serve config of the
ConfigMap beside it and against the cluster it runs on, and both against k8s/rayservice.yaml, whose
image, Ray version and model settings the job shares.

The entrypoint is read as rerank-batch's documented command line (docs/batch.md).
"""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from rerank_batch.cli import build_parser
from rerank_core.config import LOCAL_TYPES, ServiceConfig, load_app_args
from tests.k8s_schema import (
    DELETE,
    CrdSchema,
    assert_rejected,
    fields_set,
    load_crd_schema,
    schema_errors,
)
from tests.test_k8s import MANIFEST, cluster, env_of, gpus, groups, only_app, ray_container

RAYJOB = MANIFEST.parent / "rayjob.yaml"
RAYJOB_CRD = "ray.io_rayjobs.yaml"
#: The shared claim the input and the output lie on.
DATA_CLAIM = "rerank-batch-data"


# --- The documents ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rayjob() -> dict[str, Any]:
    job, _ = yaml.safe_load_all(RAYJOB.read_text())
    return job


@pytest.fixture(scope="module")
def config_map() -> dict[str, Any]:
    _, config = yaml.safe_load_all(RAYJOB.read_text())
    return config


@pytest.fixture(scope="module")
def rayservice() -> dict[str, Any]:
    return yaml.safe_load(MANIFEST.read_text())


@pytest.fixture(scope="module")
def args(rayjob: dict[str, Any]) -> argparse.Namespace:
    """The entrypoint's arguments, split as a shell splits them."""
    program, *argv = shlex.split(rayjob["spec"]["entrypoint"])
    assert program == "rerank-batch"
    return build_parser().parse_args(argv)


@pytest.fixture(scope="module")
def batch_service(config_map: dict[str, Any], args: argparse.Namespace) -> ServiceConfig:
    """The service configuration of the file ``--config`` names, read as rerank-batch reads a Serve
    config: its first application's args."""
    key = PurePosixPath(args.config).name
    serve_config = yaml.safe_load(config_map["data"][key])
    return load_app_args(serve_config["applications"][0]["args"])


def mounts(group: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The Ray container's volume mounts by the path they are mounted at, each with its volume
    (empty where the Pod lacks the volume the mount names)."""
    volumes = {v["name"]: v for v in group["template"]["spec"].get("volumes", [])}
    return {
        m["mountPath"]: volumes.get(m["name"], {}) for m in ray_container(group).get("volumeMounts", [])
    }


def claim_mount(group: dict[str, Any]) -> str | None:
    """Where the Ray container mounts the data claim, if it does (once)."""
    (path,) = [
        path
        for path, volume in mounts(group).items()
        if volume.get("persistentVolumeClaim", {}).get("claimName") == DATA_CLAIM
    ] or [None]
    return path


# --- Schema and KubeRay's rules ---------------------------------------------------------------


@pytest.fixture(scope="module")
def crd_schema(k8s_schemas: Path, rayjob: dict[str, Any]) -> CrdSchema:
    return load_crd_schema(k8s_schemas / RAYJOB_CRD, rayjob["apiVersion"])


def test_manifest_is_a_valid_rayjob(crd_schema: CrdSchema, rayjob: dict[str, Any]) -> None:
    """The API server accepts the RayJob with strict field validation (no unknown field)."""
    assert rayjob["apiVersion"] == "ray.io/v1" and rayjob["kind"] == "RayJob"
    assert schema_errors(crd_schema.validator, rayjob) == []


_CLUSTER = ("spec", "rayClusterSpec")
_WORKER = (*_CLUSTER, "workerGroupSpecs", 0)
_HEAD_CONTAINER = (*_CLUSTER, "headGroupSpec", "template", "spec", "containers", 0)
BROKEN: dict[str, tuple[tuple[Any, ...], Any]] = {
    "an unknown field in spec": (("spec", "entrypointArgs"), ["--trec"]),
    "the entrypoint as a list, not a string": (("spec", "entrypoint"), ["rerank-batch", "--trec"]),
    "a worker group without groupName": ((*_WORKER, "groupName"), DELETE),
    "shutdownAfterJobFinishes as a string": (("spec", "shutdownAfterJobFinishes"), "true"),
    "a TTL given as a duration": (("spec", "ttlSecondsAfterFinished"), "5m"),
    "an int32 overflow": (("spec", "activeDeadlineSeconds"), 2**31),
    "a volume mount without its path": ((*_HEAD_CONTAINER, "volumeMounts", 0, "mountPath"), DELETE),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_schema_validation_rejects_a_broken_rayjob(
    crd_schema: CrdSchema, rayjob: dict[str, Any], case: str
) -> None:
    """The schema check can fail: each broken copy is rejected, at the field broken."""
    path, value = BROKEN[case]
    assert_rejected(crd_schema.validator, rayjob, path, value)


def test_rayjob_sets_no_field_guarded_by_cel_rules(crd_schema: CrdSchema, rayjob: dict[str, Any]) -> None:
    """No field whose CEL rules jsonschema cannot run (managedBy, deletionStrategy...) is set."""
    assert crd_schema.cel_paths, "the CRD has CEL rules; their paths should have been collected"
    assert fields_set(rayjob, crd_schema.cel_paths) == []


def test_job_runs_on_a_cluster_of_its_own_that_goes_when_it_ends(rayjob: dict[str, Any]) -> None:
    """Submitted by a Kubernetes Job to a cluster made for it and deleted after it, retried on a
    new cluster, and stopped at a deadline: what KubeRay checks beyond the CRD holds too."""
    spec = rayjob["spec"]
    # The CRD takes any string here: a misspelt mode would pass the schema.
    assert spec["submissionMode"] == "K8sJobMode"
    # KubeRay refuses a TTL without shutdownAfterJobFinishes.
    assert spec["shutdownAfterJobFinishes"] is True and spec["ttlSecondsAfterFinished"] > 0
    assert "clusterSelector" not in spec
    # A retry (a new cluster) resumes from the parts written; the deadline is hours, not the
    # minutes a GPU cluster takes to start. KubeRay refuses a deadline that is not positive.
    assert spec["backoffLimit"] >= 1
    assert spec["activeDeadlineSeconds"] >= 3600


# --- The entrypoint and the config it reads ---------------------------------------------------


def test_config_is_the_config_maps_file_mounted_on_every_node(
    rayjob: dict[str, Any], config_map: dict[str, Any], args: argparse.Namespace
) -> None:
    """``--config`` names a file of the ConfigMap, mounted where it says on the head (where the
    driver reads it) and on every worker."""
    assert config_map["apiVersion"] == "v1" and config_map["kind"] == "ConfigMap"
    config = PurePosixPath(args.config)
    assert config.name in config_map["data"]
    for name, group in groups(rayjob):
        volume = mounts(group).get(str(config.parent), {})
        assert volume.get("configMap", {}).get("name") == config_map["metadata"]["name"], name


def test_backend_is_a_local_model_of_the_config(
    batch_service: ServiceConfig, args: argparse.Namespace
) -> None:
    """``--backend`` names a backend of that config, a model the job's actors run themselves."""
    assert args.backend in batch_service.backends
    assert batch_service.backends[args.backend].type in LOCAL_TYPES


def test_backend_has_the_services_model_settings(
    batch_service: ServiceConfig, rayservice: dict[str, Any], args: argparse.Namespace
) -> None:
    """The job scores with the service's model and its settings (length, batches, precision...);
    only how it is served (``serving``) is the job's own, set by the entrypoint's flags."""
    service = load_app_args(only_app(yaml.safe_load(rayservice["spec"]["serveConfigV2"]))["args"])
    ours = batch_service.backends[args.backend].model_dump(exclude={"serving"})
    assert ours == service.backends[args.backend].model_dump(exclude={"serving"})


# --- The cluster --------------------------------------------------------------------------------


def test_same_image_and_ray_version_as_the_rayservice(
    rayjob: dict[str, Any], rayservice: dict[str, Any]
) -> None:
    """The job runs the image the service runs, on the same Ray."""
    assert cluster(rayjob)["rayVersion"] == cluster(rayservice)["rayVersion"]
    (image,) = {ray_container(group)["image"] for _, group in groups(rayservice)}
    for name, group in groups(rayjob):
        assert ray_container(group)["image"] == image, name


def test_input_and_output_lie_on_the_claim_mounted_at_one_path_on_every_node(
    rayjob: dict[str, Any], args: argparse.Namespace
) -> None:
    """Every node mounts the claim at the same path, and INPUT and ``--output`` lie under it:
    actors on every node read the input and write their parts into the output directory."""
    where = {name: claim_mount(group) for name, group in groups(rayjob)}
    assert None not in where.values() and len(set(where.values())) == 1, where
    data_dir = PurePosixPath(where["head"])
    assert data_dir.is_absolute()
    for path in (args.input, args.output):
        assert PurePosixPath(path).is_relative_to(data_dir) and PurePosixPath(path) != data_dir, path
    assert not PurePosixPath(args.input).is_relative_to(args.output)


def test_gpu_actors_fit_the_gpu_worker_group(rayjob: dict[str, Any], args: argparse.Namespace) -> None:
    """The actors ask for GPUs, which the GPU worker group's Pods have, with CPUs enough; there are
    at most as many actors as the group's Pods hold at the top of their range."""
    assert args.num_gpus > 0 and 1 <= args.min_actors <= args.max_actors
    gpu_groups = [g for g in cluster(rayjob)["workerGroupSpecs"] if gpus(g) >= 1]
    assert gpu_groups, "no worker group asks for nvidia.com/gpu"
    for group in gpu_groups:
        resources = ray_container(group)["resources"]
        assert resources["requests"]["nvidia.com/gpu"] == resources["limits"]["nvidia.com/gpu"]
        # The actors a Pod's GPUs hold must find their CPUs there too.
        assert gpus(group) / args.num_gpus * args.num_cpus <= float(resources["limits"]["cpu"])
    # As many actors as the GPU Pods at the top of the autoscaling range hold, no more.
    assert args.max_actors * args.num_gpus == sum(g["maxReplicas"] * gpus(g) for g in gpu_groups)


def test_environment_as_the_rayservice_where_it_applies(
    rayjob: dict[str, Any], rayservice: dict[str, Any]
) -> None:
    """Ray's token auth, offline weights and node failure detection as in the service; no Ray
    auth variable set by hand (KubeRay sets them)."""
    assert cluster(rayjob)["authOptions"] == cluster(rayservice)["authOptions"]
    service_env = env_of(ray_container(cluster(rayservice)["headGroupSpec"]))
    health = {v for v in service_env if v.startswith("RAY_health_check_")}
    assert health
    for name, group in groups(rayjob):
        env = env_of(ray_container(group))
        # The weights are in the image; a new actor must not try to download them.
        assert env["HF_HUB_OFFLINE"]["value"] == "1", name
        assert {v: env[v] for v in health} == {v: service_env[v] for v in health}, name
        # KubeRay sets RAY_AUTH_MODE/RAY_AUTH_TOKEN itself; a value here would fight it.
        assert not {"RAY_AUTH_MODE", "RAY_AUTH_TOKEN"} & set(env), name
