"""ferryctl identities check against ses-local and a DNS server of the test.

No Kafka is started: the check reads only the configuration, SES
(GetEmailIdentity) and DNS. The zone is built from the Easy DKIM tokens
that ses-local returns to a botocore client, the way an operator copies
them from the SES console.
"""

import json
import os
import subprocess
import urllib.request

import botocore.session
import pytest
from botocore.config import Config

import ferrystack
from dnsserver import DnsServer

FERRYCTL = os.path.join(ferrystack.BUILD, "ferryctl")
SPF = "v=spf1 include:amazonses.com ~all"

# Regions each organization sends from: its home region, and the
# secondary region when its mail may fail over (multi_region and smtp).
EXPECTED_REGIONS = {
    "acme": ["us-east-1", "us-west-2"],
    "globex": ["us-east-1"],
    "bergmann": ["eu-west-1"],
    "lumiere": ["eu-west-1", "us-west-2"],
}
DOMAINS = {org["name"]: org["domain"] for org in ferrystack.ORGANIZATIONS}


def control(stack, region, method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        "http://127.0.0.1:%d%s" % (stack.ses_ports[region], path),
        data=data, method=method,
        headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def identities_by_region():
    regions = {}
    for org, org_regions in EXPECTED_REGIONS.items():
        for region in org_regions:
            regions.setdefault(region, []).append(DOMAINS[org])
    return regions


def set_identities(stack, region, domains, pending=()):
    control(stack, region, "POST", "/_ferry/identities",
            {"identities": domains, "pending": list(pending)})


def dkim_tokens(stack, region, domain):
    client = botocore.session.get_session().create_client(
        "sesv2", region_name=region,
        endpoint_url="http://127.0.0.1:%d" % stack.ses_ports[region],
        aws_access_key_id=ferrystack.ACCESS_KEY_ID,
        aws_secret_access_key=ferrystack.SECRET_ACCESS_KEY,
        config=Config(retries={"total_max_attempts": 1}))
    identity = client.get_email_identity(EmailIdentity=domain)
    return identity["DkimAttributes"]["Tokens"]


def publish_zone(stack, dns):
    for region, domains in identities_by_region().items():
        for domain in domains:
            dns.set_records(domain, "TXT",
                            ["google-site-verification=abc", SPF])
            for token in dkim_tokens(stack, region, domain):
                dns.set_records("%s._domainkey.%s" % (token, domain),
                                "CNAME",
                                ["%s.dkim.amazonses.com" % token])


def run_check(stack, dns, *extra):
    argv = [FERRYCTL, "identities", "check", "-c", stack.config_path,
            "--resolver", "127.0.0.1:%d" % dns.port] + list(extra)
    return subprocess.run(argv, capture_output=True, text=True, timeout=120,
                          env=stack.daemon_env())


def failing_lines(stdout):
    return [line for line in stdout.splitlines()[2:]
            if line.split()[5] != "ok"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """ses-local for every region and the DNS server, with a good zone."""
    base = int(os.environ.get("FERRY_TEST_PORT", "29092")) + 200
    stack = ferrystack.Stack(str(tmp_path_factory.mktemp("identities")),
                             base_port=base, log=lambda text: None)
    stack.write_config()
    try:
        for region in stack.regions:
            stack.start_ses(region)
        for region, domains in identities_by_region().items():
            set_identities(stack, region, domains)
        with DnsServer(base + 30) as dns:
            publish_zone(stack, dns)
            yield stack, dns
    finally:
        for region in stack.regions:
            stack.stop_process("ses-" + region)


@pytest.fixture
def good(setup):
    """The stack and DNS server, put back to the good state after a test."""
    stack, dns = setup
    yield stack, dns
    for region, domains in identities_by_region().items():
        set_identities(stack, region, domains)
    publish_zone(stack, dns)


def test_all_in_place_exits_0(good):
    stack, dns = good
    result = run_check(stack, dns)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines()[0].split() == [
        "ORG", "REGION", "DOMAIN", "CHECK", "RECORD", "STATUS", "DETAIL"]
    assert failing_lines(result.stdout) == []


def test_json_lists_regions_per_org(good):
    stack, dns = good
    result = run_check(stack, dns, "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] is True
    seen = {}
    for check in report["checks"]:
        regions = seen.setdefault(check["organization"], [])
        if check["region"] not in regions:
            regions.append(check["region"])
    assert seen == EXPECTED_REGIONS
    kinds = {(c["organization"], c["region"], c["check"])
             for c in report["checks"]}
    assert ("acme", "us-west-2", "identity") in kinds
    assert ("acme", "us-west-2", "spf") in kinds
    dkim = [c for c in report["checks"]
            if c["organization"] == "acme" and c["region"] == "us-west-2"
            and c["check"] == "dkim"]
    assert len(dkim) == 3
    assert all(c["record"].endswith("._domainkey.acme.example")
               for c in dkim)


def test_missing_spf_record_exits_1(good):
    stack, dns = good
    dns.set_records("lumiere.example", "TXT", ["google-site-verification=x"])
    result = run_check(stack, dns)
    assert result.returncode == 1, result.stdout
    failing = [line.split()[:6] for line in failing_lines(result.stdout)]
    assert failing == [
        ["lumiere", "eu-west-1", "lumiere.example", "spf",
         "lumiere.example", "missing"],
        ["lumiere", "us-west-2", "lumiere.example", "spf",
         "lumiere.example", "missing"],
    ]
    assert "2 of " in result.stderr


def test_spf_without_ses_is_wrong(good):
    stack, dns = good
    dns.set_records("bergmann.example", "TXT", ["v=spf1 mx -all"])
    result = run_check(stack, dns)
    assert result.returncode == 1
    failing = failing_lines(result.stdout)
    assert len(failing) == 1, result.stdout
    assert failing[0].split()[:6] == [
        "bergmann", "eu-west-1", "bergmann.example", "spf",
        "bergmann.example", "wrong"]
    assert "include:amazonses.com" in failing[0]


def test_identity_missing_in_secondary_exits_1(good):
    stack, dns = good
    set_identities(stack, "us-west-2", ["lumiere.example"])
    result = run_check(stack, dns)
    assert result.returncode == 1, result.stdout
    failing = failing_lines(result.stdout)
    assert len(failing) == 1, result.stdout
    assert failing[0].split()[:6] == [
        "acme", "us-west-2", "acme.example", "identity", "-", "missing"]
    assert "not an identity in SES us-west-2" in failing[0]


def test_unverified_identity_in_secondary_exits_1(good):
    stack, dns = good
    set_identities(stack, "us-west-2", ["lumiere.example"],
                   pending=["acme.example"])
    result = run_check(stack, dns)
    assert result.returncode == 1, result.stdout
    failing = failing_lines(result.stdout)
    assert len(failing) == 1, result.stdout
    assert failing[0].split()[:6] == [
        "acme", "us-west-2", "acme.example", "identity", "-", "unverified"]
    assert "VerificationStatus PENDING" in failing[0]


def test_missing_dkim_cname_exits_1(good):
    stack, dns = good
    token = dkim_tokens(stack, "us-east-1", "globex.example")[1]
    name = "%s._domainkey.globex.example" % token
    dns.set_records(name, "CNAME", [])
    result = run_check(stack, dns)
    assert result.returncode == 1
    failing = failing_lines(result.stdout)
    assert len(failing) == 1, result.stdout
    assert failing[0].split()[:6] == [
        "globex", "us-east-1", "globex.example", "dkim", name, "missing"]
    assert "%s.dkim.amazonses.com" % token in failing[0]


def test_usage_errors_exit_64(setup):
    stack, dns = setup
    cases = [
        ["identities"],
        ["identities", "verify", "-c", stack.config_path],
        ["identities", "check"],
        ["identities", "check", "-c", stack.config_path, "--resolver",
         "dns.example:53"],
        ["identities", "check", "-c", stack.config_path, "--resolver",
         "127.0.0.1:70000"],
        ["identities", "check", "-c", stack.config_path, "--bogus"],
    ]
    for args in cases:
        result = subprocess.run([FERRYCTL] + args, capture_output=True,
                                text=True, timeout=30)
        assert result.returncode == 64, args
        assert len(result.stderr.splitlines()) == 1, result.stderr
        assert "--help" in result.stderr, result.stderr


def test_help_exits_0():
    result = subprocess.run([FERRYCTL, "identities", "--help"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0
    assert result.stdout.startswith("usage: ferryctl identities check")
