"""deploy/k8s: schema-valid objects whose cross-references (labels, ports, probes, env, images,
volumes, Redis policy) agree with each other and with the code they deploy."""

from __future__ import annotations

import re
import shutil
import subprocess
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.deploy.loaders import (
    K8S,
    ROOT,
    by_name,
    k8s_objects,
    load_yaml_docs,
    objects_of,
    redis_conf,
    selects,
    settings_env_names,
    to_bytes,
)

K8S_VERSION = "1.37.0"  # newest schema bundled by kubernetes-validate
DEPLOYMENTS = ("neumeta", "neumeta-gpu")


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    (only,) = deployment["spec"]["template"]["spec"]["containers"]
    return only


def pod_labels(workload: dict[str, Any]) -> dict[str, str]:
    return workload["spec"]["template"]["metadata"]["labels"]


@pytest.mark.parametrize("path,doc", k8s_objects(), ids=lambda v: getattr(v, "name", None) or v["kind"])
def test_object_is_valid_against_the_kubernetes_schema(path, doc):
    # strict: unknown fields (a misspelt probe, a field at the wrong level) fail too
    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_the_validator_rejects_a_misplaced_field():
    """Guard against a validator that passes everything."""
    broken = by_name("Deployment", "neumeta")
    broken = yaml.safe_load(yaml.safe_dump(broken))
    container(broken)["readinessProbe"]["path"] = "/readyz"  # belongs under httpGet
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)


def test_kustomizations_list_every_manifest_once():
    listed = []
    for kustomization in sorted(K8S.rglob("kustomization.yaml")):
        for entry in yaml.safe_load(kustomization.read_text())["resources"]:
            target = (kustomization.parent / entry).resolve()
            assert target.exists(), f"{kustomization}: {entry} does not exist"
            if target.is_file():
                listed.append(target)
    manifests = [path.resolve() for path in K8S.rglob("*.yaml") if path.name != "kustomization.yaml"]
    assert sorted(listed) == sorted(manifests)


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed (kustomize is built in)")
@pytest.mark.parametrize("overlay,deployments", [("", {"neumeta"}), ("gpu", set(DEPLOYMENTS))])
def test_kustomize_builds_each_entry_point(overlay, deployments):
    argv = ["kubectl", "kustomize", str(K8S / overlay)]
    out = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    docs = [doc for doc in yaml.safe_load_all(out.stdout) if doc]
    assert {d["metadata"]["name"] for d in docs if d["kind"] == "Deployment"} == deployments
    assert all(d["metadata"].get("namespace") == "neumeta" for d in docs if d["kind"] != "Namespace")


@pytest.mark.parametrize("name", DEPLOYMENTS)
def test_probes_hit_real_routes_on_the_container_port(name, app_client):
    deployment = by_name("Deployment", name)
    spec = container(deployment)
    ports = {port["name"]: port["containerPort"] for port in spec["ports"]}
    probes = {kind: spec[kind]["httpGet"] for kind in ("startupProbe", "livenessProbe", "readinessProbe")}
    assert probes["livenessProbe"]["path"] == "/healthz"
    assert probes["readinessProbe"]["path"] == "/readyz"
    for kind, probe in probes.items():
        # kubelet counts 200-399 as success
        assert app_client.get(probe["path"]).status_code == 200, f"{name} {kind}: GET {probe['path']}"
        assert probe["port"] in ports, f"{name} {kind}: port {probe['port']!r} is not a named container port"
    # The server listens where the ports say it does.
    args = spec["args"]
    assert int(args[args.index("--port") + 1]) == ports["http"] == 8000
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert int(annotations["prometheus.io/port"]) == ports["http"]
    scrape = app_client.get(annotations["prometheus.io/path"])
    assert scrape.status_code == 200 and "neumeta_http_requests_total" in scrape.text


def test_services_select_pods_and_target_their_ports():
    workloads = objects_of("Deployment") + objects_of("StatefulSet")
    for service in objects_of("Service"):
        selected = [w for w in workloads if selects(service["spec"]["selector"], pod_labels(w))]
        assert selected, f"Service {service['metadata']['name']} selects no pods"
        for workload in selected:
            port_names = {p["name"] for c in workload["spec"]["template"]["spec"]["containers"] for p in c["ports"]}
            for port in service["spec"]["ports"]:
                assert port["targetPort"] in port_names, (service["metadata"]["name"], workload["metadata"]["name"])
    # one Service per backend: the cache key includes the backend, so only same-backend replicas
    # answer with identical bytes
    for name in DEPLOYMENTS:
        selector = by_name("Service", name)["spec"]["selector"]
        assert [w["metadata"]["name"] for w in workloads if selects(selector, pod_labels(w))] == [name]


def test_pdbs_hpa_and_selectors_point_at_existing_workloads():
    for deployment in objects_of("Deployment"):
        assert selects(deployment["spec"]["selector"]["matchLabels"], pod_labels(deployment))
    for pdb in objects_of("PodDisruptionBudget"):
        selector = pdb["spec"]["selector"]["matchLabels"]
        matched = [d for d in objects_of("Deployment") if selects(selector, pod_labels(d))]
        assert len(matched) == 1, f"PDB {pdb['metadata']['name']} should cover exactly one Deployment"
    (hpa,) = objects_of("HorizontalPodAutoscaler")
    target = hpa["spec"]["scaleTargetRef"]
    assert by_name(target["kind"], target["name"])
    assert hpa["spec"]["minReplicas"] >= by_name("PodDisruptionBudget", "neumeta")["spec"]["maxUnavailable"] + 1


def test_networkpolicy_admits_only_service_pods_to_redis():
    (policy,) = objects_of("NetworkPolicy")
    redis = by_name("StatefulSet", "neumeta-redis")
    assert selects(policy["spec"]["podSelector"]["matchLabels"], pod_labels(redis))
    (rule,) = policy["spec"]["ingress"]
    (source,) = rule["from"]
    allowed = [w["metadata"]["name"] for w in objects_of("Deployment") + objects_of("StatefulSet")
               if selects(source["podSelector"]["matchLabels"], pod_labels(w))]
    assert sorted(allowed) == sorted(DEPLOYMENTS)
    assert rule["ports"] == [{"protocol": "TCP", "port": 6379}]


def test_env_names_are_settings_fields_and_the_configmap_validates():
    from service.settings import Settings

    fields = settings_env_names()
    config = by_name("ConfigMap", "neumeta-config")["data"]
    assert set(config) <= fields, set(config) - fields
    for name in DEPLOYMENTS:
        spec = container(by_name("Deployment", name))
        assert spec["envFrom"] == [{"configMapRef": {"name": "neumeta-config"}}]
        assert {env["name"] for env in spec["env"]} <= fields
    # Every value parses as Settings would read it from the environment.
    settings = Settings(**{key.removeprefix("NEUMETA_").lower(): value for key, value in config.items()})
    assert settings.redis_url == "redis://neumeta-redis:6379/0"
    assert settings.lock_ttl_ms >= settings.generation_timeout_s * 1000  # see Settings.lock_ttl_ms
    redis_service = by_name("Service", "neumeta-redis")
    assert redis_service["spec"]["ports"][0]["port"] == 6379 and settings.redis_url.startswith(
        f"redis://{redis_service['metadata']['name']}:")


def test_configmap_keys_are_documented_in_env_example():
    example = ROOT / "deploy" / "env.example"
    if not example.exists():
        pytest.skip("deploy/env.example not written yet")
    documented = set(re.findall(r"^#?\s*(NEUMETA_[A-Z0-9_]+)=", example.read_text(), flags=re.MULTILINE))
    assert set(by_name("ConfigMap", "neumeta-config")["data"]) <= documented


@pytest.mark.parametrize("name", DEPLOYMENTS)
def test_pods_run_non_root_with_limits_and_mounted_volumes(name):
    deployment = by_name("Deployment", name)
    pod = deployment["spec"]["template"]["spec"]
    spec = container(deployment)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001  # the image's user (Dockerfile useradd)
    assert spec["securityContext"]["allowPrivilegeEscalation"] is False
    assert spec["securityContext"]["readOnlyRootFilesystem"] is True
    for part in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(spec["resources"][part])
    volumes = {volume["name"] for volume in pod["volumes"]}
    mounts = {mount["name"]: mount["mountPath"] for mount in spec["volumeMounts"]}
    assert set(mounts) <= volumes
    assert mounts["tmp"] == "/tmp"  # read-only root: matplotlib and Triton caches live in /tmp


def test_gpu_variant_requests_a_gpu_and_tolerates_gpu_nodes():
    deployment = by_name("Deployment", "neumeta-gpu")
    spec = container(deployment)
    assert spec["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in \
        deployment["spec"]["template"]["spec"]["tolerations"]
    assert {"name": "NEUMETA_BACKEND", "value": "triton"} in spec["env"]


def test_images_match_the_compose_images(compose):
    compose_images = {service["image"] for service in compose["services"].values()}
    for name, target in (("neumeta", "cpu"), ("neumeta-gpu", "cuda")):
        image = container(by_name("Deployment", name))["image"]
        assert image in compose_images and image.endswith(f"-{target}")
    redis_image = by_name("StatefulSet", "neumeta-redis")["spec"]["template"]["spec"]["containers"][0]["image"]
    assert redis_image == compose["services"]["redis"]["image"]


def test_redis_evicts_lru_without_persistence_in_both_deployments():
    compose_conf = redis_conf((ROOT / "deploy" / "redis" / "redis.conf").read_text())
    k8s_conf = redis_conf(by_name("ConfigMap", "neumeta-redis-config")["data"]["redis.conf"])
    for conf in (compose_conf, k8s_conf):
        assert conf["maxmemory-policy"] == "allkeys-lru"
        assert conf["save"] == '""' and conf["appendonly"] == "no"
    # maxmemory leaves headroom under the container's memory limit (Redis overhead, buffers).
    statefulset = by_name("StatefulSet", "neumeta-redis")
    limit = statefulset["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"]
    assert 0 < to_bytes(k8s_conf["maxmemory"]) <= 0.8 * to_bytes(limit)
    mounts = statefulset["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]
    config_mount = next(m for m in mounts if m["name"] == "config")["mountPath"]
    args = statefulset["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[-1] == f"{config_mount}/redis.conf"


def test_every_yaml_file_under_deploy_parses():
    for path in sorted((ROOT / "deploy").rglob("*.y*ml")):
        assert load_yaml_docs(path), f"{path} is empty"
