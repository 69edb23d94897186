"""Checks of the Prometheus rules and the Grafana dashboard under deploy/.

Every metric they use must be listed in docs/metrics.md, every PromQL
expression must parse (promtool check rules), and the alert rules must
pass their own unit tests (promtool test rules). No server is started.
"""

import json
import os
import re
import shutil
import subprocess

import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
RULES = os.path.join(ROOT, "deploy", "prometheus", "ferry-rules.yaml")
RULES_TEST = os.path.join(ROOT, "deploy", "prometheus",
                          "ferry-rules.test.yaml")
DASHBOARD = os.path.join(ROOT, "deploy", "grafana", "ferry-dashboard.json")
METRICS_DOC = os.path.join(ROOT, "docs", "metrics.md")
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"

# Words of PromQL that look like metric names but are not.
PROMQL_KEYWORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool",
    "and", "or", "unless", "offset", "inf", "nan",
}
# Clauses whose parenthesised list contains label names, not metrics.
LABEL_LIST = re.compile(
    r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
IDENTIFIER = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")

# Grafana variables in the dashboard's expressions and the values that replace
# them when promtool parses the expression.
GRAFANA_VARIABLES = {
    "$__rate_interval": "5m",
    "$__interval": "1m",
    "$region": ".*",
    "$group": ".*",
}

# Panels the dashboard must have: title and a metric its queries read.
REQUIRED_PANELS = {
    "Consumer lag (messages)": "ferry_consumer_group_lag_messages",
    "Consumer lag (age of oldest message)": "ferry_consumer_group_lag_seconds",
    "SES outcomes per region": "ferry_deliver_ses_requests_total",
    "Messages after the final dot": "ferry_ingress_messages_total",
    "Accept latency": "ferry_ingress_accept_duration_seconds",
    "Failover state": "ferry_failover_state",
}

# Alerts the rules must define, each with the metric it watches.
REQUIRED_ALERTS = {
    "FerryDeliveryLagHigh": "ferry_consumer_group_lag_seconds",
    "FerryFailoverActive": "ferry_failover_state",
    "FerrySesRegionDown": "ferry_deliver_ses_requests_total",
    "FerrySesLocalFault": "ferry_deliver_ses_requests_total",
    "FerrySesTransientErrorsHigh": "ferry_deliver_ses_requests_total",
    "FerryIngressKafkaNotReady": "ferry_ingress_kafka_ready",
    "FerryIngressDurabilityFailed": "ferry_ingress_durability_ok",
    "FerryIngressDeferring": "ferry_ingress_messages_total",
    "FerrySecondaryNotReady": "ferry_secondary_ready",
    "FerryNoActiveController": "ferry_controller_active",
}


def documented_metrics():
    """Return {name: type} from the tables of docs/metrics.md."""
    metrics = {}
    with open(METRICS_DOC) as f:
        for line in f:
            match = re.match(r"\|\s*`([a-z_:][a-z0-9_:]*)`\s*\|\s*(\w+)\s*\|",
                             line)
            if match:
                metrics[match.group(1)] = match.group(2)
    return metrics


def metric_names(expr):
    """Return the metric names a PromQL expression selects."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", "", text)
    text = re.sub(r"\[[^\]]*\]", "", text)
    text = LABEL_LIST.sub("", text)
    names = set()
    for match in IDENTIFIER.finditer(text):
        word = match.group(0)
        rest = text[match.end():].lstrip()
        if rest.startswith("("):
            continue                        # a function or aggregation
        if word.lower() in PROMQL_KEYWORDS:
            continue
        names.add(word)
    return names


def base_metric(name, documented):
    """Map a histogram's series name to the documented histogram."""
    for suffix in HISTOGRAM_SUFFIXES:
        base = name[:-len(suffix)]
        if name.endswith(suffix) and documented.get(base) == "histogram":
            return base
    return name


def load_rules():
    with open(RULES) as f:
        return yaml.safe_load(f)


def alert_rules():
    return [rule for group in load_rules()["groups"]
            for rule in group["rules"] if "alert" in rule]


def load_dashboard():
    with open(DASHBOARD) as f:
        return json.load(f)


def dashboard_panels(dashboard):
    for panel in dashboard["panels"]:
        yield panel
        for inner in panel.get("panels", []):
            yield inner


def dashboard_exprs(dashboard):
    return [target["expr"] for panel in dashboard_panels(dashboard)
            for target in panel.get("targets", [])]


def substitute_variables(expr):
    for name, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(name, value)
    assert "$" not in expr, "unknown Grafana variable in: " + expr
    return expr


def test_metric_name_parser():
    assert metric_names(
        'sum by (region, le) (rate(a_bucket{x="b(c)"}[5m])) / '
        'on (region) group_left b_total > bool 0.5') == {"a_bucket",
                                                       "b_total"}
    assert metric_names("(sum(x) or vector(0)) < 1") == {"x"}


def test_metrics_doc_parses():
    documented = documented_metrics()
    assert documented["ferry_failover_state"] == "gauge"
    assert documented["ferry_ingress_accept_duration_seconds"] == "histogram"
    assert documented["ferry_build_info"] == "gauge"
    assert documented["ferry_consumer_group_members"] == "gauge"


def test_rule_metrics_are_documented():
    documented = documented_metrics()
    for rule in alert_rules():
        for name in metric_names(rule["expr"]):
            assert base_metric(name, documented) in documented, (
                "%s uses %s, which docs/metrics.md does not list"
                % (rule["alert"], name))


def test_required_alerts_present():
    rules = {rule["alert"]: rule for rule in alert_rules()}
    for alert, metric in REQUIRED_ALERTS.items():
        assert alert in rules, alert
        assert metric in metric_names(rules[alert]["expr"]), alert


def test_alerts_have_severity_and_annotations():
    for rule in alert_rules():
        assert rule["labels"]["severity"] in ("warning", "critical"), rule
        for key in ("summary", "description", "runbook"):
            assert rule["annotations"].get(key), (rule["alert"], key)


def test_promtool_checks_rules():
    result = subprocess.run([PROMTOOL, "check", "rules", RULES],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_rule_unit_tests():
    result = subprocess.run([PROMTOOL, "test", "rules", RULES_TEST],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_rule_tests_cover_every_alert():
    with open(RULES_TEST) as f:
        tests = yaml.safe_load(f)["tests"]
    firing = set()
    for case in tests:
        for check in case["alert_rule_test"]:
            if check.get("exp_alerts"):
                firing.add(check["alertname"])
    assert firing == {rule["alert"] for rule in alert_rules()}


def test_dashboard_structure():
    dashboard = load_dashboard()
    assert dashboard["uid"] == "ferry-overview"
    assert dashboard["title"]
    assert isinstance(dashboard["schemaVersion"], int)
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"

    ids = [panel["id"] for panel in dashboard_panels(dashboard)]
    assert len(ids) == len(set(ids)), "panel ids repeat: %s" % ids
    for panel in dashboard_panels(dashboard):
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"], panel["title"]
        ref_ids = [target["refId"] for target in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]


def test_dashboard_has_required_panels():
    panels = {panel["title"]: panel
              for panel in dashboard_panels(load_dashboard())}
    for title, metric in REQUIRED_PANELS.items():
        assert title in panels, title
        names = set()
        for target in panels[title]["targets"]:
            names |= metric_names(target["expr"])
        documented = documented_metrics()
        assert metric in {base_metric(n, documented) for n in names}, title


def test_dashboard_metrics_are_documented():
    documented = documented_metrics()
    for expr in dashboard_exprs(load_dashboard()):
        for name in metric_names(expr):
            assert base_metric(name, documented) in documented, (
                "the dashboard uses %s, which docs/metrics.md does not list"
                % name)


def test_dashboard_exprs_parse(tmp_path):
    exprs = dashboard_exprs(load_dashboard())
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": "ferry:dashboard_expr_%d" % index,
         "expr": substitute_variables(expr)}
        for index, expr in enumerate(exprs)]}]}
    path = tmp_path / "dashboard-rules.yaml"
    path.write_text(yaml.safe_dump(rules))
    result = subprocess.run([PROMTOOL, "check", "rules", str(path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: %d rules found" % len(exprs) in result.stdout


@pytest.mark.parametrize("expr", ["sum(rate(x[5m]", "max by (a (b)"])
def test_promtool_rejects_bad_exprs(tmp_path, expr):
    """Guards the two promtool checks above against passing everything."""
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "bad", "rules": [
        {"record": "bad", "expr": expr}]}]}))
    result = subprocess.run([PROMTOOL, "check", "rules", str(path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
