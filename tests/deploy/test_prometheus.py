"""deploy/prometheus: alert expressions parse, name only metrics service/metrics.py exports, and
fire (or stay quiet) as their unit tests say; scrape configs point where the manifests expose."""

from __future__ import annotations

import re
import shutil
import subprocess

import promql_parser
import pytest
import yaml

from tests.deploy.loaders import ROOT, by_name, exposed_metric_names

PROM = ROOT / "deploy" / "prometheus"
REQUIRED_ALERTS = {"NeumetaHighErrorRate", "NeumetaCacheDegraded", "NeumetaHighP99Latency",
                   "NeumetaGenerationQueueSaturated"}


def rules() -> list[dict]:
    return [rule for group in yaml.safe_load((PROM / "alerts.yml").read_text())["groups"] for rule in group["rules"]]


def metric_names(expr: str) -> set[str]:
    return set(re.findall(r"\b(neumeta_[a-z_]+)\b", expr))


def test_alerts_cover_errors_cache_latency_and_queue():
    assert REQUIRED_ALERTS <= {rule["alert"] for rule in rules()}


@pytest.mark.parametrize("rule", rules(), ids=lambda rule: rule["alert"])
def test_expression_parses_and_names_real_metrics(rule):
    promql_parser.parse(rule["expr"])  # raises on a syntax error
    assert metric_names(rule["expr"]) <= exposed_metric_names(), metric_names(rule["expr"]) - exposed_metric_names()
    assert rule["labels"]["severity"] in {"page", "warning"}
    assert rule["annotations"]["summary"]


def test_the_parser_rejects_a_broken_expression():
    with pytest.raises(ValueError):
        promql_parser.parse("sum(rate(neumeta_http_requests_total[5m])")


def test_queue_alert_threshold_follows_the_configured_queue_bound():
    (rule,) = [r for r in rules() if r["alert"] == "NeumetaGenerationQueueSaturated"]
    bound = int(re.search(r">= 0\.8 \* (\d+)", rule["expr"]).group(1))
    assert bound == int(by_name("ConfigMap", "neumeta-config")["data"]["NEUMETA_MAX_QUEUED_GENERATIONS"])


def test_hpa_and_adapter_use_an_exported_gauge():
    (metric,) = [m for m in by_name("HorizontalPodAutoscaler", "neumeta")["spec"]["metrics"] if m["type"] == "Pods"]
    name = metric["pods"]["metric"]["name"]
    assert name in exposed_metric_names()
    (adapter_rule,) = yaml.safe_load((PROM / "adapter-rules.yaml").read_text())["rules"]["custom"]
    assert adapter_rule["name"]["as"] == name and adapter_rule["seriesQuery"].startswith(name + "{")


def test_kubernetes_scrape_keeps_annotated_pods_with_namespace_and_pod_labels():
    config = yaml.safe_load((PROM / "prometheus.yml").read_text())
    (job,) = config["scrape_configs"]
    relabels = job["relabel_configs"]
    keep = [r for r in relabels if r.get("action") == "keep"]
    assert keep[0]["source_labels"] == ["__meta_kubernetes_pod_annotation_prometheus_io_scrape"]
    # pod annotations the relabelling reads are the ones the Deployments set
    annotations = by_name("Deployment", "neumeta")["spec"]["template"]["metadata"]["annotations"]
    read = {label.removeprefix("__meta_kubernetes_pod_annotation_")
            for r in relabels for label in r["source_labels"] if "annotation" in label}
    assert read == {re.sub(r"[^A-Za-z0-9_]", "_", key) for key in annotations}  # Prometheus' sanitising
    assert {"namespace", "pod"} <= {r.get("target_label") for r in relabels}
    assert config["rule_files"] == ["alerts.yml"]


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed (apt-get install prometheus)")
def test_promtool_checks_rules_and_runs_the_alert_unit_tests():
    for command in (["check", "rules", "alerts.yml"], ["test", "rules", "alerts_test.yml"],
                    # Debian's promtool is built without kubernetes_sd, so only the compose config
                    ["check", "config", "prometheus-compose.yml"]):
        out = subprocess.run(["promtool", *command], cwd=PROM, check=False, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stdout + out.stderr
