"""deploy/: the Kubernetes manifests validated offline against the API schemas of a pinned Kubernetes version
(kubernetes-validate, strict: unknown fields fail), and checked against the service they run (probes on real
routes, settings that exist, the image's user) and against each other (selectors, names, ports); the KServe
InferenceService's required fields checked by hand, its pod part against the core PodSpec schema."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from app.config import Settings
from app.main import create_app
from tests.deploy.conftest import ROOT

K8S_VERSION = "1.30.0"
KUBERNETES = ROOT / "deploy" / "kubernetes"
INFERENCE_SERVICE = ROOT / "deploy" / "kserve" / "inferenceservice.yaml"
ENTRYPOINT_VARIABLES = {"IMGCLF_SEED_MODELS"}  # read by docker/entrypoint.sh, not by the service
# InferenceService predictor fields that are KServe's own, not the Kubernetes PodSpec's.
KSERVE_COMPONENT_FIELDS = {"minReplicas", "maxReplicas", "scaleMetric", "scaleTarget", "containerConcurrency"}


def load(path: Path) -> dict[str, Any]:
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(document, dict), f"{path} holds one YAML document"
    return document


@pytest.fixture(scope="module")
def resources() -> dict[str, dict[str, Any]]:
    """The resources kustomization.yaml lists, by kind."""
    listed = load(KUBERNETES / "kustomization.yaml")["resources"]
    on_disk = {path.name for path in KUBERNETES.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(listed) == on_disk, "every manifest is applied by `kubectl apply -k deploy/kubernetes`"
    by_kind = {}
    for name in listed:
        document = load(KUBERNETES / name)
        by_kind[document["kind"]] = document
    return by_kind


@pytest.fixture(scope="module")
def inference_service() -> dict[str, Any]:
    return load(INFERENCE_SERVICE)


@pytest.fixture(scope="module")
def routes() -> set[str]:
    return set(create_app(Settings(watch_interval=0)).openapi()["paths"])


def validate(document: dict[str, Any]) -> None:
    try:
        kubernetes_validate.validate(document, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        where = ".".join(str(part) for part in exc.path)
        pytest.fail(f"{document['kind']} does not validate against Kubernetes {K8S_VERSION}: {where}: {exc.message}")


def container(resources: dict[str, dict[str, Any]]) -> dict[str, Any]:
    [serving] = resources["Deployment"]["spec"]["template"]["spec"]["containers"]
    return serving


def env(container_spec: dict[str, Any]) -> dict[str, str]:
    return {item["name"]: item["value"] for item in container_spec.get("env", [])}


def image_user() -> int:
    match = re.search(r"useradd [^\n]*--uid (\d+)", (ROOT / "Dockerfile").read_text(encoding="utf-8"))
    assert match, "the Dockerfile creates its user with useradd --uid"
    return int(match.group(1))


CORE_KINDS = ["PersistentVolumeClaim", "Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"]


@pytest.mark.parametrize("kind", CORE_KINDS)
def test_manifest_validates_against_the_kubernetes_schema(resources: dict[str, dict[str, Any]], kind: str) -> None:
    validate(resources[kind])


def test_the_validation_catches_a_misspelt_field(resources: dict[str, dict[str, Any]]) -> None:
    broken = copy.deepcopy(resources["Deployment"])
    serving = broken["spec"]["template"]["spec"]["containers"][0]
    serving["readinesProbe"] = serving.pop("readinessProbe")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)


def test_probes_use_the_protocols_health_routes(resources: dict[str, dict[str, Any]], routes: set[str]) -> None:
    serving = container(resources)
    assert serving["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert serving["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert serving["startupProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert {"/v2/health/ready", "/v2/health/live"} <= routes
    ports = {port["name"]: port["containerPort"] for port in serving["ports"]}
    assert ports["http"] == int(env(serving)["IMGCLF_PORT"])


def test_runs_as_the_images_user_with_a_read_only_root(resources: dict[str, dict[str, Any]]) -> None:
    pod = resources["Deployment"]["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == image_user()
    for each in pod["initContainers"] + pod["containers"]:
        security = each["securityContext"]
        assert security["readOnlyRootFilesystem"] is True and security["allowPrivilegeEscalation"] is False
        assert security["capabilities"]["drop"] == ["ALL"]
    mounts = {mount["mountPath"]: mount for mount in container(resources)["volumeMounts"]}
    assert "/tmp" in mounts, "uploads spool to /tmp: it needs a writable volume"


def test_models_come_from_the_shared_volume(resources: dict[str, dict[str, Any]]) -> None:
    pod = resources["Deployment"]["spec"]["template"]["spec"]
    claims = {
        v["name"]: v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"] if "persistentVolumeClaim" in v
    }
    assert claims == {"models": resources["PersistentVolumeClaim"]["metadata"]["name"]}
    assert "ReadWriteMany" in resources["PersistentVolumeClaim"]["spec"]["accessModes"]
    serving = container(resources)
    [models] = [m for m in serving["volumeMounts"] if m["name"] == "models"]
    assert models["mountPath"] == env(serving)["IMGCLF_MODELS_DIR"] and models["readOnly"] is True
    assert int(env(serving)["IMGCLF_WATCH_INTERVAL"]) > 0, "hot reload picks up new versions on the volume"
    [seed] = pod["initContainers"]
    assert seed["image"] == serving["image"] and seed["args"] == ["true"]  # the entrypoint seeds, then exits
    assert [m["mountPath"] for m in seed["volumeMounts"]] == [models["mountPath"]]


def test_environment_names_real_settings(
    resources: dict[str, dict[str, Any]], inference_service: dict[str, Any]
) -> None:
    names = {f"IMGCLF_{field.upper()}" for field in Settings.model_fields} | ENTRYPOINT_VARIABLES
    [kserve] = inference_service["spec"]["predictor"]["containers"]
    for each in (container(resources), kserve):
        unknown = {name for name in env(each) if name.startswith("IMGCLF_")} - names
        assert not unknown, f"not settings of app.config.Settings: {sorted(unknown)}"


def test_service_hpa_and_budget_point_at_the_deployment(resources: dict[str, dict[str, Any]]) -> None:
    deployment = resources["Deployment"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert resources["Service"]["spec"]["selector"].items() <= labels.items()
    assert resources["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert resources["Service"]["spec"]["ports"][0]["targetPort"] in {p["name"] for p in container(resources)["ports"]}
    target = resources["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    assert resources["HorizontalPodAutoscaler"]["spec"]["minReplicas"] >= 2  # the budget keeps one of them up


def test_resources_are_requested_and_bounded(resources: dict[str, dict[str, Any]]) -> None:
    """The HPA's utilisation is a share of the CPU request, and the service sizes its threads from the CPU limit:
    both must be there, and equal, so that the threads match the cores the pod is guaranteed."""
    amounts = container(resources)["resources"]
    assert amounts["requests"]["cpu"] == amounts["limits"]["cpu"]
    assert set(amounts["requests"]) == set(amounts["limits"]) == {"cpu", "memory"}


# The KServe InferenceService (a custom resource: no schema ships with kubernetes-validate)


def test_inference_service_has_the_required_fields(inference_service: dict[str, Any], routes: set[str]) -> None:
    assert inference_service["apiVersion"] == "serving.kserve.io/v1beta1"
    assert inference_service["kind"] == "InferenceService"
    assert re.fullmatch(r"[a-z]([-a-z0-9]{0,43}[a-z0-9])?", inference_service["metadata"]["name"]), "a DNS-1035 label"
    [kserve] = inference_service["spec"]["predictor"]["containers"]
    assert kserve["name"] == "kserve-container" and kserve["image"]
    assert [port["containerPort"] for port in kserve["ports"]] == [8080] == [int(env(kserve)["IMGCLF_PORT"])]
    assert env(kserve)["PROTOCOL"] == "v2"
    assert kserve["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": 8080}
    assert kserve["livenessProbe"]["httpGet"] == {"path": "/v2/health/live", "port": 8080}
    assert {"/v2/health/ready", "/v2/health/live"} <= routes


def test_inference_service_runs_the_same_image_on_the_same_volume(
    resources: dict[str, dict[str, Any]], inference_service: dict[str, Any]
) -> None:
    [kserve] = inference_service["spec"]["predictor"]["containers"]
    assert kserve["image"] == container(resources)["image"]
    assert kserve["resources"] == container(resources)["resources"]
    claim = resources["PersistentVolumeClaim"]["metadata"]["name"]
    assert env(kserve)["STORAGE_URI"] == f"pvc://{claim}" and env(kserve)["IMGCLF_MODELS_DIR"] == "/mnt/models"
    assert inference_service["spec"]["predictor"]["securityContext"]["runAsUser"] == image_user()
    assert kserve["securityContext"]["readOnlyRootFilesystem"] is True


def test_inference_service_pod_part_validates_as_a_pod_spec(inference_service: dict[str, Any]) -> None:
    predictor = {k: v for k, v in inference_service["spec"]["predictor"].items() if k not in KSERVE_COMPONENT_FIELDS}
    validate({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "predictor"}, "spec": predictor})
