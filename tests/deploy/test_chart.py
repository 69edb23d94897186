"""Tests of the Helm chart in deploy/helm/ferry, per region's values.

The rendered configuration of each region goes through every daemon's
--check-config with the arguments of its Deployment, so the chart and the
daemons cannot drift apart.
"""

import json
import os
import re
import shutil
import subprocess

import pytest
import yaml

import chart

BUILD = os.path.join(chart.ROOT, "build")

# Deployments each region's release must contain, by component label.
EXPECTED_COMPONENTS = {
    "us-east-1": {"ingress", "deliver-us-east-1", "controller"},
    "eu-west-1": {"ingress", "deliver-eu-west-1", "controller"},
    "us-west-2": {"takeover", "controller"},
}


@pytest.fixture(scope="module", params=chart.REGIONS)
def region(request):
    return request.param


@pytest.fixture(scope="module")
def docs(region):
    return chart.render(region)


def components(docs):
    return {d["metadata"]["labels"]["app.kubernetes.io/component"]
            for d in chart.by_kind(docs, "Deployment")}


def test_lint_strict(region):
    args = ["lint", "--strict", "--namespace", chart.NAMESPACE]
    for path in chart.values_files(region):
        args += ["-f", path]
    result = chart.helm(args)
    assert result.returncode == 0, result.stdout + result.stderr


def test_region_components(region, docs):
    assert components(docs) == EXPECTED_COMPONENTS[region]


def test_labels_and_selectors(docs):
    assert chart.check_labels(docs) == []


def test_probes_on_http_listen(docs):
    assert chart.check_probes(docs) == []


def test_smtp_ports(docs):
    assert chart.check_smtp_ports(docs) == []


def test_grace_covers_drain(docs):
    assert chart.check_drain_time(docs) == []


def test_every_workload_has_pdb(docs):
    pdb_selectors = [d["spec"]["selector"]["matchLabels"]
                     for d in chart.by_kind(docs, "PodDisruptionBudget")]
    for deployment in chart.by_kind(docs, "Deployment"):
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert any(all(labels.get(k) == v for k, v in s.items())
                   for s in pdb_selectors), chart.name_of(deployment)


def test_controller_runs_two_replicas(docs):
    [controller] = [d for d in chart.by_kind(docs, "Deployment")
                    if d["metadata"]["name"].endswith("-controller")]
    assert controller["spec"]["replicas"] == 2


def test_daemons_accept_rendered_config(region, docs, tmp_path):
    """Each container's own arguments, with --check-config, accept the
    ConfigMap rendered for the region."""
    config_path = tmp_path / "ferry.yaml"
    config_path.write_text(chart.rendered_config(docs))
    checked = 0
    for deployment, container in chart.workloads(docs):
        [binary] = container["command"]
        args = list(container["args"])
        assert args[:2] == ["-c", "/etc/ferry/ferry.yaml"], deployment
        args[1] = str(config_path)
        result = subprocess.run(
            [os.path.join(BUILD, binary)] + args +
            ["--check-config"], capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, (deployment, result.stderr)
        assert result.stdout.strip() == "%s: ok" % config_path
        checked += 1
    assert checked == len(EXPECTED_COMPONENTS[region])


def test_kafka_properties_passed_through(docs):
    config = yaml.safe_load(chart.rendered_config(docs))
    with open(chart.values_files("us-east-1")[0]) as f:
        wanted = yaml.safe_load(f)["config"]["kafka"]["properties"]
    assert config["kafka"]["properties"] == wanted


def test_tls_secret_mounted_and_configured():
    docs = chart.render("us-east-1")
    config = yaml.safe_load(chart.rendered_config(docs))
    assert config["ingress"]["tls_certificate"] == "/etc/ferry/tls/tls.crt"
    assert config["ingress"]["tls_key"] == "/etc/ferry/tls/tls.key"
    [ingress] = [d for d in chart.by_kind(docs, "Deployment")
                 if d["metadata"]["name"].endswith("-ingress")]
    pod = ingress["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["tls"]["secret"]["secretName"] == "ferry-smtp-tls"
    mounts = {m["name"]: m["mountPath"]
              for m in pod["containers"][0]["volumeMounts"]}
    assert mounts["tls"] == "/etc/ferry/tls"


def test_auth_secret_mounted_and_configured():
    docs = chart.render("us-east-1", [
        "--set", "ingress.auth.credentialsSecret=smtp-users"])
    config = yaml.safe_load(chart.rendered_config(docs))
    assert config["ingress"]["credentials_file"] == \
        "/etc/ferry/auth/credentials"
    [ingress] = [d for d in chart.by_kind(docs, "Deployment")
                 if d["metadata"]["name"].endswith("-ingress")]
    pod = ingress["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["auth"]["secret"]["secretName"] == "smtp-users"
    mounts = {m["name"]: m["mountPath"]
              for m in pod["containers"][0]["volumeMounts"]}
    assert mounts["auth"] == "/etc/ferry/auth"


def test_irsa_role_on_service_account():
    docs = chart.render("us-east-1")
    [account] = chart.by_kind(docs, "ServiceAccount")
    assert account["metadata"]["annotations"][
        "eks.amazonaws.com/role-arn"].endswith(":role/ferry-us-east-1")
    for deployment in chart.by_kind(docs, "Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        assert pod["serviceAccountName"] == account["metadata"]["name"]


def test_credentials_secret_as_environment():
    docs = chart.render("us-east-1", ["--set", "aws.irsaRoleArn=",
                                      "--set", "aws.credentialsSecret=ses"])
    for deployment in chart.by_kind(docs, "Deployment"):
        env = {e["name"]: e for e in
               deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
        for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            ref = env[key]["valueFrom"]["secretKeyRef"]
            assert ref == {"name": "ses", "key": key}


def test_takeover_scaled_by_keda_from_zero():
    docs = chart.render("us-west-2")
    [scaled] = chart.by_kind(docs, "ScaledObject")
    assert scaled["spec"]["minReplicaCount"] == 0
    groups = sorted(t["metadata"]["consumerGroup"]
                    for t in scaled["spec"]["triggers"])
    assert groups == ["ferry-takeover.eu-west-1", "ferry-takeover.us-east-1"]
    [takeover] = [d for d in chart.by_kind(docs, "Deployment")
                  if d["metadata"]["name"] == scaled["spec"]
                  ["scaleTargetRef"]["name"]]
    # KEDA owns the replica count, so the Deployment leaves it unset.
    assert "replicas" not in takeover["spec"]
    args = takeover["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[2:] == ["--takeover", "--region", "us-west-2"]


def test_proxy_protocol_sets_config_and_annotation(tmp_path):
    docs = chart.render("us-east-1", [
        "--set", "ingress.proxyProtocol.enabled=true",
        "--set", "config.ingress.proxy_networks={10.0.0.0/16}"])
    config_text = chart.rendered_config(docs)
    config = yaml.safe_load(config_text)
    assert config["ingress"]["proxy_protocol"] is True
    assert config["ingress"]["proxy_networks"] == ["10.0.0.0/16"]
    [service] = [s for s in chart.by_kind(docs, "Service")
                 if s["spec"].get("type") == "LoadBalancer"]
    annotations = service["metadata"]["annotations"]
    assert annotations[
        "service.beta.kubernetes.io/aws-load-balancer-proxy-protocol"] == "*"
    assert annotations[
        "service.beta.kubernetes.io/aws-load-balancer-type"] == "external"
    path = tmp_path / "ferry.yaml"
    path.write_text(config_text)
    result = subprocess.run(
        [os.path.join(BUILD, "ferry-ingress"), "-c", str(path),
         "--check-config"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr


def test_proxy_protocol_needs_networks():
    args = ["template", "--name-template", chart.RELEASE]
    for path in chart.values_files("us-east-1"):
        args += ["-f", path]
    result = chart.helm(args + ["--set", "ingress.proxyProtocol.enabled=true"])
    assert result.returncode != 0
    assert "config.ingress.proxy_networks" in result.stderr


def test_empty_http_listen_rejected():
    args = ["template", "--name-template", chart.RELEASE]
    for path in chart.values_files("us-east-1"):
        args += ["-f", path]
    result = chart.helm(args + ["--set", "config.deliver.http_listen="])
    assert result.returncode != 0
    assert "config.deliver.http_listen" in result.stderr


def test_prometheus_rule_from_values():
    groups = [{"name": "ferry", "rules": [{
        "alert": "FerryLagHigh",
        "expr": "max(ferry_consumer_group_lag_seconds) > 600",
        "for": "10m"}]}]
    docs = chart.render("us-east-1", [
        "--set", "metrics.prometheusRule.enabled=true",
        "--set-json", "metrics.prometheusRule.groups=" + json.dumps(groups)])
    [rule] = chart.by_kind(docs, "PrometheusRule")
    assert rule["spec"]["groups"] == groups


def test_service_monitor_scrapes_metrics():
    docs = chart.render("us-east-1")
    [monitor] = chart.by_kind(docs, "ServiceMonitor")
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"
    selector = monitor["spec"]["selector"]["matchLabels"]
    [service] = [s for s in chart.by_kind(docs, "Service")
                 if all(s["metadata"]["labels"].get(k) == v
                        for k, v in selector.items())]
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["ports"][0]["targetPort"] == "http"


def test_dashboard_is_deploy_grafana():
    docs = chart.render("us-east-1")
    [dashboard] = [d for d in chart.by_kind(docs, "ConfigMap")
                   if "ferry.json" in d.get("data", {})]
    with open(os.path.join(chart.ROOT, "deploy", "grafana",
                           "ferry-dashboard.json")) as f:
        expected = json.load(f)
    assert json.loads(dashboard["data"]["ferry.json"]) == expected


def test_prometheus_rule_defaults_to_rules_file():
    docs = chart.render("us-east-1")
    [rule] = chart.by_kind(docs, "PrometheusRule")
    with open(os.path.join(chart.ROOT, "deploy", "prometheus",
                           "ferry-rules.yaml")) as f:
        expected = yaml.safe_load(f)["groups"]
    assert rule["spec"]["groups"] == expected


def key_paths(node, prefix="", leaves_only=False):
    """Return the dotted paths of the keys of nested mappings; with
    leaves_only, only of keys whose value is not a non-empty mapping."""
    paths = set()
    if isinstance(node, dict):
        for key, value in node.items():
            path = prefix + str(key)
            if not (leaves_only and isinstance(value, dict) and value):
                paths.add(path)
            paths |= key_paths(value, path + ".", leaves_only)
    return paths


def test_values_config_mirrors_example():
    """values.yaml's config block has exactly the keys of the example
    configuration, except the free-form maps and lists."""
    with open(os.path.join(chart.ROOT, "deploy", "config",
                           "ferry.example.yaml")) as f:
        example = yaml.safe_load(f)
    with open(os.path.join(chart.CHART, "values.yaml")) as f:
        values = yaml.safe_load(f)["config"]
    for tree in (example, values):
        tree["kafka"]["properties"] = {}
        tree["regions"] = {}
    assert key_paths(values) == key_paths(example)


def test_values_documented_key_by_key():
    """Every value of values.yaml has a ## @param line, on its key or an
    ancestor, and every @param names a key."""
    path = os.path.join(chart.CHART, "values.yaml")
    with open(path) as f:
        text = f.read()
    values = yaml.safe_load(text)
    params = set(re.findall(r"^\s*## @param (\S+) ", text, re.M))
    assert params - key_paths(values) == set()
    undocumented = [k for k in key_paths(values, leaves_only=True)
                    if not any(k == p or k.startswith(p + ".")
                               for p in params)]
    assert undocumented == []


@pytest.mark.parametrize("removed, expected", [
    ("path: /readyz", "readinessProbe path"),
    ("app.kubernetes.io/part-of: ferry", "lacks label "
     "app.kubernetes.io/part-of"),
])
def test_checks_catch_broken_chart(tmp_path, removed, expected):
    """The checks above fail on a copy of the chart with a line removed."""
    broken = tmp_path / "ferry"
    shutil.copytree(chart.CHART, broken)
    hits = 0
    for file in broken.rglob("*.yaml"):
        text = file.read_text()
        if removed in text:
            file.write_text(text.replace(removed, ""))
            hits += 1
    for file in broken.rglob("*.tpl"):
        text = file.read_text()
        if removed in text:
            file.write_text(text.replace(removed, ""))
            hits += 1
    assert hits > 0, "the chart no longer contains %r" % removed
    docs = chart.render("us-east-1", chart=str(broken))
    problems = (chart.check_labels(docs) + chart.check_probes(docs))
    assert any(expected in p for p in problems), problems
