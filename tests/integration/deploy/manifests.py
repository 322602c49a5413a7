"""Just enough of ``kustomize build`` for deploy/k8s (resources, namespace, strategic-merge
patches, image tags) so that the overlay is validated as applied, without kubectl in CI; and a
lint for what schemas cannot say (probes, limits, non-root)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

Manifest = dict[str, Any]
_CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding"}
_POD_OWNERS = {"Deployment", "StatefulSet", "DaemonSet", "Job"}
_LONG_RUNNING = {"Deployment", "StatefulSet", "DaemonSet"}


def load(path: Path) -> list[Manifest]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def build(directory: Path) -> list[Manifest]:
    """The manifests a kustomization renders (the features deploy/k8s uses, no more)."""
    kustomization = load(directory / "kustomization.yaml")[0]
    objects: list[Manifest] = []
    for resource in kustomization.get("resources", []):
        path = directory / resource
        objects += build(path) if path.is_dir() else load(path)
    for patch in kustomization.get("patches", []):
        for change in load(directory / patch["path"]):
            target = _find(objects, change["kind"], change["metadata"]["name"])
            _merge(target, change)
    for image in kustomization.get("images", []):
        for container in containers(objects):
            name, _, _tag = container["image"].partition(":")
            if name == image["name"]:
                new_name = image.get("newName", name)
                container["image"] = f"{new_name}:{image.get('newTag', _tag)}"
    namespace = kustomization.get("namespace")
    if namespace:
        for obj in objects:
            if obj["kind"] not in _CLUSTER_SCOPED:
                obj["metadata"]["namespace"] = namespace
    return objects


def _find(objects: list[Manifest], kind: str, name: str) -> Manifest:
    for obj in objects:
        if obj["kind"] == kind and obj["metadata"]["name"] == name:
            return obj
    raise KeyError(f"patch for {kind}/{name}, which the base does not have")


def _merge(base: Any, change: Any) -> None:
    """Strategic merge: maps recursively, lists of named maps by name, other lists replaced."""
    for key, value in change.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        elif (
            isinstance(value, list)
            and isinstance(base.get(key), list)
            and all(isinstance(v, dict) and "name" in v for v in value + base[key])
        ):
            by_name = {item["name"]: item for item in base[key]}
            for item in value:
                if item["name"] in by_name:
                    _merge(by_name[item["name"]], item)
                else:
                    base[key].append(copy.deepcopy(item))
        else:
            base[key] = copy.deepcopy(value)


def pod_spec(obj: Manifest) -> Manifest | None:
    if obj["kind"] not in _POD_OWNERS:
        return None
    spec: Manifest = obj["spec"]["template"]["spec"]
    return spec


def containers(objects: list[Manifest]) -> list[Manifest]:
    out: list[Manifest] = []
    for obj in objects:
        spec = pod_spec(obj)
        if spec is not None:
            out += spec.get("containers", []) + spec.get("initContainers", [])
    return out


def lint(objects: list[Manifest]) -> list[str]:
    """Problems: a container without limits/requests, running as root or with privileges, or
    (long-running workloads) without startup/readiness/liveness probes."""
    problems = []
    for obj in objects:
        spec = pod_spec(obj)
        if spec is None:
            continue
        pod_security = spec.get("securityContext", {})
        for c in spec.get("containers", []) + spec.get("initContainers", []):
            where = f"{obj['kind']}/{obj['metadata']['name']}/{c['name']}"
            resources = c.get("resources", {})
            for kind in ("requests", "limits"):
                for resource in ("cpu", "memory"):
                    if resource not in resources.get(kind, {}):
                        problems.append(f"{where}: no {kind}.{resource}")
            security = {**pod_security, **c.get("securityContext", {})}
            if security.get("runAsNonRoot") is not True:
                problems.append(f"{where}: runAsNonRoot is not true")
            if security.get("runAsUser", 1) == 0:
                problems.append(f"{where}: runs as uid 0")
            if security.get("allowPrivilegeEscalation") is not False:
                problems.append(f"{where}: allowPrivilegeEscalation is not false")
            if security.get("readOnlyRootFilesystem") is not True:
                problems.append(f"{where}: root filesystem is writable")
            if "ALL" not in security.get("capabilities", {}).get("drop", []):
                problems.append(f"{where}: capabilities not dropped (drop: [ALL])")
            if security.get("privileged"):
                problems.append(f"{where}: privileged")
            if obj["kind"] in _LONG_RUNNING and c in spec.get("containers", []):
                for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                    if probe not in c:
                        problems.append(f"{where}: no {probe}")
            if c.get("image", "").endswith(":latest") or ":" not in c.get("image", ""):
                problems.append(f"{where}: image without a pinned tag")
    return problems
