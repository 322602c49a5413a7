"""deploy/k8s: every manifest (base and the built production overlay) against the Kubernetes
OpenAPI schemas shipped with kubernetes-validate (offline, strict), plus a workload lint."""

from __future__ import annotations

import copy
from pathlib import Path, PurePosixPath
from typing import Any

import kubernetes_validate
import pytest

from tests.integration.deploy import manifests
from tests.integration.deploy.conftest import REPO

K8S = REPO / "deploy" / "k8s"
BASE = K8S / "base"
PRODUCTION = K8S / "overlays" / "production"
# The oldest Kubernetes minor release still supported upstream when this was written; the
# manifests use nothing newer.
KUBERNETES = "1.31.0"


def _one(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (found,) = [o for o in objects if o["kind"] == kind]
    return found


def _container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    spec = manifests.pod_spec(_one(objects, "Deployment"))
    assert spec is not None
    container: dict[str, Any] = spec["containers"][0]
    return container


@pytest.mark.parametrize(
    "path",
    sorted(p for p in BASE.glob("*.yaml") if p.name != "kustomization.yaml"),
    ids=lambda p: p.name,
)
def test_base_manifest_matches_the_kubernetes_schema(path: Path) -> None:
    for obj in manifests.load(path):
        kubernetes_validate.validate(obj, KUBERNETES, strict=True)


@pytest.mark.parametrize("directory", [BASE, PRODUCTION], ids=["base", "production"])
def test_built_kustomization_matches_the_schema_and_passes_the_lint(directory: Path) -> None:
    objects = manifests.build(directory)
    kinds = sorted(o["kind"] for o in objects)
    assert kinds == sorted(
        [
            "ConfigMap",
            "Deployment",
            "HorizontalPodAutoscaler",
            "Ingress",
            "Job",
            "Namespace",
            "NetworkPolicy",
            "NetworkPolicy",
            "PodDisruptionBudget",
            "Service",
            "ServiceAccount",
        ]
    )
    for obj in objects:
        kubernetes_validate.validate(obj, KUBERNETES, strict=True)
    assert manifests.lint(objects) == []


def test_schema_validation_rejects_an_unknown_field() -> None:
    deployment = copy.deepcopy(_one(manifests.build(BASE), "Deployment"))
    deployment["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES, strict=True)


@pytest.mark.parametrize(
    ("mutation", "problem"),
    [
        (lambda c, p: c.pop("readinessProbe"), "no readinessProbe"),
        (lambda c, p: c.pop("startupProbe"), "no startupProbe"),
        (lambda c, p: c["resources"].pop("limits"), "no limits.memory"),
        (lambda c, p: p["securityContext"].update(runAsUser=0), "runs as uid 0"),
        (
            lambda c, p: (
                p["securityContext"].pop("runAsNonRoot"),
                c["securityContext"].pop("runAsNonRoot"),
            ),
            "runAsNonRoot is not true",
        ),
        (lambda c, p: c["securityContext"].update(readOnlyRootFilesystem=False), "writable"),
        (lambda c, p: c["securityContext"]["capabilities"].update(drop=[]), "capabilities"),
        (lambda c, p: c.update(image="ghcr.io/example/nluserve:latest"), "pinned tag"),
    ],
)
def test_lint_catches_a_container_without_probes_limits_or_running_as_root(
    mutation: Any, problem: str
) -> None:
    objects = copy.deepcopy(manifests.build(BASE))
    spec = manifests.pod_spec(_one(objects, "Deployment"))
    assert spec is not None
    mutation(spec["containers"][0], spec)
    assert any(problem in p for p in manifests.lint(objects)), manifests.lint(objects)


def test_probes_use_healthz_for_liveness_and_readyz_for_readiness() -> None:
    container = _container(manifests.build(BASE))
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"


def test_production_overlay_scales_out_with_bigger_pods_and_its_own_stores() -> None:
    base, production = manifests.build(BASE), manifests.build(PRODUCTION)
    assert _one(production, "HorizontalPodAutoscaler")["spec"]["minReplicas"] == 3
    assert _container(production)["resources"]["limits"]["memory"] == "5Gi"
    assert _container(production)["securityContext"] == _container(base)["securityContext"]
    assert _one(production, "ConfigMap")["data"]["NLUSERVE_WORKERS"] == "4"
    [example] = manifests.load(PRODUCTION / "secret.example.yaml")
    secret = example["stringData"]
    assert "postgres-primary" in secret["NLUSERVE_DATABASE_URL"]
    assert secret["NLUSERVE_REDIS_URL"].startswith("rediss://")
    assert all(
        o["metadata"].get("namespace") == "nluserve" for o in production if o["kind"] != "Namespace"
    )


@pytest.mark.parametrize("directory", [BASE, PRODUCTION], ids=["base", "production"])
def test_the_hpa_alone_sets_the_replica_count(directory: Path) -> None:
    objects = manifests.build(directory)
    deployment, hpa = _one(objects, "Deployment"), _one(objects, "HorizontalPodAutoscaler")
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    # Every `kubectl apply` would set it back, whatever the HPA had scaled to.
    assert "replicas" not in deployment["spec"]


def _cpus(quantity: str) -> float:
    return int(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


@pytest.mark.parametrize("directory", [BASE, PRODUCTION], ids=["base", "production"])
def test_inference_threads_fit_the_cpu_limit(directory: Path) -> None:
    # The pod sees every core of its node; its CPU limit is a quota.
    objects = manifests.build(directory)
    config = _one(objects, "ConfigMap")["data"]
    limit = _cpus(_container(objects)["resources"]["limits"]["cpu"])
    workers = int(config["NLUSERVE_WORKERS"])
    threads = int(config["NLUSERVE_INFERENCE_THREADS"])
    assert threads == max(1, int(limit) // workers)


@pytest.mark.parametrize("kind", ["Deployment", "Job"])
def test_data_dir_is_made_by_nluserve_below_the_root_owned_empty_dir(kind: str) -> None:
    # kubelet makes an emptyDir root's (fsGroup changes its group only): nluserve could not
    # chmod it, but owns a directory it creates inside.
    objects = manifests.build(BASE)
    data_dir = PurePosixPath(_one(objects, "ConfigMap")["data"]["NLUSERVE_DATA_DIR"])
    spec = manifests.pod_spec(_one(objects, kind))
    assert spec is not None
    empty_dirs = {v["name"] for v in spec["volumes"] if "emptyDir" in v}
    (container,) = spec["containers"]
    (mount,) = [
        m
        for m in container["volumeMounts"]
        if data_dir.is_relative_to(m["mountPath"]) and m["name"] in empty_dirs
    ]
    assert data_dir != PurePosixPath(mount["mountPath"])
    assert spec["securityContext"]["runAsUser"] == 10001


def test_ingress_uses_cert_manager_the_services_limits_and_hides_metrics() -> None:
    objects = manifests.build(BASE)
    ingress, config = _one(objects, "Ingress"), _one(objects, "ConfigMap")["data"]
    annotations = ingress["metadata"]["annotations"]
    assert annotations["cert-manager.io/cluster-issuer"]
    assert ingress["spec"]["tls"][0]["secretName"]
    assert (
        annotations["nginx.ingress.kubernetes.io/proxy-body-size"]
        == config["NLUSERVE_MAX_BODY_BYTES"]
    )
    timeout = float(config["NLUSERVE_REQUEST_TIMEOUT_S"])
    assert float(annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"]) > timeout
    paths = [p["path"] for rule in ingress["spec"]["rules"] for p in rule["http"]["paths"]]
    assert "/v1" in paths and "/" not in paths and not any(p.startswith("/metrics") for p in paths)
    (console,) = [
        p
        for rule in ingress["spec"]["rules"]
        for p in rule["http"]["paths"]
        if p["path"] == "/console"
    ]
    assert console["pathType"] == "Prefix"  # /console redirects to /console/ and its assets


def _policy(objects: list[dict[str, Any]], name: str) -> dict[str, Any]:
    (found,) = [
        o for o in objects if o["kind"] == "NetworkPolicy" and o["metadata"]["name"] == name
    ]
    spec: dict[str, Any] = found["spec"]
    return spec


def test_network_policy_admits_only_the_ingress_controller_namespace() -> None:
    policy = _policy(manifests.build(BASE), "nluserve-ingress")
    assert policy["policyTypes"] == ["Ingress"]
    (rule,) = policy["ingress"]
    (peer,) = rule["from"]
    assert set(peer) == {"namespaceSelector"}
    assert peer["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "ingress-nginx"
    }


@pytest.mark.parametrize("directory", [BASE, PRODUCTION], ids=["base", "production"])
def test_an_apply_never_replaces_the_real_secret_with_placeholders(directory: Path) -> None:
    # The Secret comes from the operator's secret store; the kustomizations only refer to it.
    objects = manifests.build(directory)
    assert not [o for o in objects if o["kind"] == "Secret"]
    refs = [
        source["secretRef"]["name"]
        for o in objects
        if (spec := manifests.pod_spec(o)) is not None
        for container in spec["containers"]
        for source in container.get("envFrom", [])
        if "secretRef" in source
    ]
    assert refs and set(refs) == {"nluserve-secrets"}


@pytest.mark.parametrize("directory", [BASE, PRODUCTION], ids=["base", "production"])
def test_the_secret_examples_are_valid_and_hold_placeholders_only(directory: Path) -> None:
    [secret] = manifests.load(directory / "secret.example.yaml")
    kubernetes_validate.validate(secret, KUBERNETES, strict=True)
    assert secret["metadata"] == {
        "name": "nluserve-secrets",
        "namespace": "nluserve",
        "labels": {"app.kubernetes.io/name": "nluserve"},
    }
    assert {"NLUSERVE_DATABASE_URL", "NLUSERVE_REDIS_URL", "NLUSERVE_KEY_PEPPER"} <= set(
        secret["stringData"]
    )
    for key, value in secret["stringData"].items():
        assert "REPLACE_ME" in value, key


def _url_ports(directory: Path) -> set[int]:
    from urllib.parse import urlsplit

    (secret,) = manifests.load(directory / "secret.example.yaml")
    urls = [v for k, v in secret["stringData"].items() if k.endswith("_URL")]
    assert urls
    return {urlsplit(url).port or 0 for url in urls}


@pytest.mark.parametrize("directory", [BASE, PRODUCTION], ids=["base", "production"])
def test_egress_allows_dns_and_the_stores_of_the_example_secret_and_nothing_else(
    directory: Path,
) -> None:
    objects = manifests.build(directory)
    policy = _policy(objects, "nluserve-egress")
    assert policy["policyTypes"] == ["Egress"]
    # Every nluserve pod, the migrate Job's too: it talks to the database.
    selector = policy["podSelector"]["matchLabels"]
    for obj in objects:
        pod = obj["spec"]["template"] if obj["kind"] in ("Deployment", "Job") else None
        if pod is not None:
            labels = pod["metadata"]["labels"]
            assert selector.items() <= labels.items(), obj["metadata"]["name"]
    dns, stores = policy["egress"]
    (peer,) = dns["to"]
    assert peer["podSelector"]["matchLabels"] == {"k8s-app": "kube-dns"}
    assert {(p["protocol"], p["port"]) for p in dns["ports"]} == {("UDP", 53), ("TCP", 53)}
    assert "to" not in stores  # any address, but only these ports
    allowed = {p["port"] for p in stores["ports"] if p["protocol"] == "TCP"}
    assert _url_ports(directory) <= allowed
    assert allowed <= {5432, 6379, 6380}
