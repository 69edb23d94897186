"""Render the Helm chart and check the manifests it produces.

Each check_* function takes the rendered documents and returns a list of
problems, one sentence each, so the tests can assert an empty list and the
self-tests can assert that a broken chart yields problems.
"""

import glob
import os
import shutil
import subprocess

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
CHART = os.path.join(ROOT, "deploy", "helm", "ferry")
VALUES_DIR = os.path.join(ROOT, "deploy", "helm")
REGIONS = ("us-east-1", "eu-west-1", "us-west-2")
RELEASE = "ferry"
NAMESPACE = "ferry"

STANDARD_LABELS = (
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
    "app.kubernetes.io/managed-by",
    "app.kubernetes.io/part-of",
    "helm.sh/chart",
)
SELECTOR_LABELS = {
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/component",
}

# The config section whose http_listen each container serves.
CONTAINER_SECTIONS = {
    "ferry-ingress": "ingress",
    "ferry-deliver": "deliver",
    "ferry-controller": "controller",
}


def helm_binary():
    """Return the Helm binary of FERRY_HELM, else the one scripts/install-deps
    built into .cache, else the one on PATH."""
    built = sorted(glob.glob(os.path.join(ROOT, ".cache", "helm-*", "bin",
                                          "helm")))
    path = (os.environ.get("FERRY_HELM") or (built[-1] if built else None)
            or shutil.which("helm"))
    if not path or not os.access(path, os.X_OK):
        raise RuntimeError(
            "helm not found at FERRY_HELM=%r, in .cache or on PATH; run "
            "scripts/install-deps, which builds it into .cache"
            % os.environ.get("FERRY_HELM"))
    return path


def values_files(region):
    return [os.path.join(VALUES_DIR, "values-global.yaml"),
            os.path.join(VALUES_DIR, "values-%s.yaml" % region)]


def helm(args, chart=CHART):
    """Run helm with args on the chart; return the CompletedProcess."""
    return subprocess.run([helm_binary()] + args[:1] + [chart] + args[1:],
                          capture_output=True, text=True, timeout=120)


def render(region, extra_args=(), chart=CHART):
    """Render the chart for a region; return the list of documents."""
    args = ["template", "--name-template", RELEASE, "--namespace", NAMESPACE]
    for path in values_files(region):
        args += ["-f", path]
    result = helm(args + list(extra_args), chart=chart)
    if result.returncode != 0:
        raise AssertionError("helm template failed for %s:\n%s"
                             % (region, result.stderr))
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def by_kind(docs, kind):
    return [doc for doc in docs if doc.get("kind") == kind]


def name_of(doc):
    return "%s/%s" % (doc["kind"], doc["metadata"]["name"])


def rendered_config(docs):
    """Return the ferry.yaml text of the release's ConfigMap."""
    for doc in by_kind(docs, "ConfigMap"):
        if "ferry.yaml" in doc.get("data", {}):
            return doc["data"]["ferry.yaml"]
    raise AssertionError("no ConfigMap with the key ferry.yaml")


def port_of(host_port):
    return int(str(host_port).rsplit(":", 1)[1])


def check_labels(docs):
    """Every object carries the standard labels; selectors use the stable
    subset and match the pods they are meant for."""
    problems = []
    for doc in docs:
        labels = doc["metadata"].get("labels") or {}
        for key in STANDARD_LABELS:
            if not labels.get(key):
                problems.append("%s lacks label %s" % (name_of(doc), key))
    pods = {}
    for deployment in by_kind(docs, "Deployment"):
        selector = deployment["spec"]["selector"]["matchLabels"]
        pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
        if set(selector) != SELECTOR_LABELS:
            problems.append("%s selects on %s, not on %s"
                            % (name_of(deployment), sorted(selector),
                               sorted(SELECTOR_LABELS)))
        for key in STANDARD_LABELS:
            if not pod_labels.get(key):
                problems.append("pods of %s lack label %s"
                                % (name_of(deployment), key))
        if any(pod_labels.get(k) != v for k, v in selector.items()):
            problems.append("%s: selector %s does not match its pod labels"
                            % (name_of(deployment), selector))
        pods[deployment["metadata"]["name"]] = pod_labels
    for doc in by_kind(docs, "PodDisruptionBudget"):
        selector = doc["spec"]["selector"]["matchLabels"]
        matched = [n for n, labels in pods.items()
                   if all(labels.get(k) == v for k, v in selector.items())]
        if len(matched) != 1:
            problems.append("%s selects the pods of %s, not of exactly one "
                            "Deployment" % (name_of(doc), matched))
    for doc in by_kind(docs, "Service"):
        selector = doc["spec"].get("selector") or {}
        if not set(selector) <= SELECTOR_LABELS:
            problems.append("%s selects on unstable labels %s"
                            % (name_of(doc), sorted(selector)))
        if not any(all(labels.get(k) == v for k, v in selector.items())
                   for labels in pods.values()):
            problems.append("%s selects no pod" % name_of(doc))
    return problems


def check_probes(docs):
    """Every container has liveness on /healthz and readiness on /readyz
    at its port named http, which is the port of its section's
    http_listen."""
    problems = []
    config = yaml.safe_load(rendered_config(docs))
    for deployment in by_kind(docs, "Deployment"):
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            where = "%s container %s" % (name_of(deployment),
                                         container["name"])
            ports = {p.get("name"): p["containerPort"]
                     for p in container.get("ports", [])}
            section = CONTAINER_SECTIONS.get(container["name"])
            if section is None:
                problems.append("%s: unknown daemon" % where)
                continue
            listen = config[section].get("http_listen", "")
            if not listen:
                problems.append("%s: %s.http_listen is empty"
                                % (where, section))
            elif ports.get("http") != port_of(listen):
                problems.append("%s: port http is %s, %s.http_listen is %s"
                                % (where, ports.get("http"), section,
                                   listen))
            for probe, path in (("livenessProbe", "/healthz"),
                                ("readinessProbe", "/readyz")):
                get = (container.get(probe) or {}).get("httpGet") or {}
                if get.get("path") != path:
                    problems.append("%s: %s path is %r, not %r"
                                    % (where, probe, get.get("path"), path))
                if get.get("port") != "http":
                    problems.append("%s: %s port is %r, not http"
                                    % (where, probe, get.get("port")))
    return problems


def check_smtp_ports(docs):
    """The ingress container exposes the port of ingress.listen as smtp,
    and its Service sends every port there."""
    problems = []
    config = yaml.safe_load(rendered_config(docs))
    for deployment in by_kind(docs, "Deployment"):
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            if container["name"] != "ferry-ingress":
                continue
            ports = {p.get("name"): p["containerPort"]
                     for p in container.get("ports", [])}
            if ports.get("smtp") != port_of(config["ingress"]["listen"]):
                problems.append("%s: port smtp is %s, ingress.listen is %s"
                                % (name_of(deployment), ports.get("smtp"),
                                   config["ingress"]["listen"]))
    for service in by_kind(docs, "Service"):
        component = service["metadata"]["labels"].get(
            "app.kubernetes.io/component")
        if component != "ingress":
            continue
        for port in service["spec"]["ports"]:
            if port.get("targetPort") != "smtp":
                problems.append("%s: port %s goes to %r, not smtp"
                                % (name_of(service), port.get("port"),
                                   port.get("targetPort")))
    return problems


def check_drain_time(docs):
    """terminationGracePeriodSeconds covers each daemon's drain."""
    problems = []
    config = yaml.safe_load(rendered_config(docs))
    for deployment in by_kind(docs, "Deployment"):
        spec = deployment["spec"]["template"]["spec"]
        grace = spec.get("terminationGracePeriodSeconds", 30)
        for container in spec["containers"]:
            pre_stop = (((container.get("lifecycle") or {}).get("preStop")
                         or {}).get("sleep") or {}).get("seconds", 0)
            if container["name"] == "ferry-ingress":
                # 10 s for sessions awaiting Kafka, 5 s for the flush.
                need = pre_stop + 10 + 5
            elif container["name"] == "ferry-deliver":
                # In-flight requests: request_timeout_ms plus 5 s.
                need = config["deliver"]["request_timeout_ms"] // 1000 + 5
            else:
                need = 5
            if grace < need:
                problems.append("%s: terminationGracePeriodSeconds %d is "
                                "below the %d s its drain takes"
                                % (name_of(deployment), grace, need))
    return problems


def workloads(docs):
    """Yield (deployment name, container) for every daemon container."""
    for deployment in by_kind(docs, "Deployment"):
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            yield deployment["metadata"]["name"], container
