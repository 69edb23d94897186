#!/usr/bin/env python3
"""Write the SigV4 signing vectors that tests/unit/test_sigv4.c checks.

Each case below is a request of our own. botocore's SigV4Auth, the signer
that scripts/seslocal verifies requests with, signs it at a fixed time, and
this script writes four files per case beside itself:

  CASE.req.json  the request as the C signer takes it: method, path before
                 percent-encoding, query as sent, headers in order, body,
                 credentials, region, service and signing time
  CASE.creq      botocore's canonical request
  CASE.sts       botocore's string to sign
  CASE.authz     botocore's Authorization header value

cases.list names the cases, one per line, in the order the test runs them.
Run it from anywhere with botocore installed; the output is the same on
every run for a given botocore version. ses-send-email.* comes from
make-ses-vector.py instead.

Where botocore and the C signer take different inputs for the same
request, the case is shaped so both sign the same thing, or left out:

- Query: botocore signs the query of a URL as given, without decoding
  and encoding it again, while the C signer decodes every name and value
  and encodes it the SigV4 way. Each case therefore hands botocore its
  parameters decoded (AWSRequest params), which botocore encodes the same
  way, and writes the query as a client sends it for the C signer.
- Paths with "." or ".." segments or repeated slashes are left out:
  botocore removes them before signing (botocore.utils.remove_dot_segments)
  and the C signer signs the path as given. SES paths never contain them.
- Headers botocore never signs (User-Agent, Expect, Connection and the
  rest of botocore.auth.SIGNED_HEADERS_BLACKLIST) are left out, because the
  C signer signs every header its caller lists.
- Header values with white space other than space, tab, CR and LF are left
  out: botocore collapses every Unicode white space character (str.split),
  the C signer only those four.
"""

import calendar
import datetime
import json
import os
from unittest import mock
from urllib.parse import quote

import botocore
import botocore.auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

HERE = os.path.dirname(os.path.abspath(__file__))
SIGNED_AT = datetime.datetime(2026, 2, 14, 8, 5, 9,
                              tzinfo=datetime.timezone.utc)
ACCESS_KEY_ID = "AKIDFERRYVECTORS"
SECRET_ACCESS_KEY = "ferry/vector+secret0123456789abcdefEXAMPLE"
SESSION_TOKEN = "FerryVectorToken//////////wEXAMPLE+abc/def=="
SES_HOST = "email.eu-west-1.amazonaws.com"
FORM_TYPE = "application/x-www-form-urlencoded; charset=utf-8"

# Each case has a name, method, path (decoded) and headers (in the order
# sent). Optional keys: params (decoded name and value pairs, in the order
# sent), body, token, region, service, and query, the query as sent when
# it differs from the plain percent-encoding of params.
CASES = [
    {
        "name": "get-vanilla",
        "method": "GET",
        "path": "/v2/email/account",
        "headers": [("Host", SES_HOST)],
    },
    {
        "name": "get-query-order",
        "method": "GET",
        "path": "/v2/email/identities",
        "params": [("PageSize", "20"), ("Filter", "verified"),
                   ("NextToken", "b2"), ("Filter", "pending"),
                   ("Filter", "Failed")],
        "headers": [("Host", SES_HOST)],
    },
    {
        # Upper-case letters sort before lower-case ones (byte order).
        "name": "get-query-key-case",
        "method": "GET",
        "path": "/v2/email/identities",
        "params": [("zone", "3"), ("Zone", "2"), ("alpha", "1"),
                   ("Alpha", "0")],
        "headers": [("Host", SES_HOST)],
    },
    {
        # "Flag" is sent without "=": both sign it as "Flag=".
        "name": "get-query-empty-value",
        "method": "GET",
        "path": "/v2/email/identities",
        "params": [("NextToken", ""), ("PageSize", "5"), ("Flag", "")],
        "query": "NextToken=&PageSize=5&Flag",
        "headers": [("Host", SES_HOST)],
    },
    {
        # Sent with lower-case hex digits; the signed form has upper case.
        "name": "get-query-utf8",
        "method": "GET",
        "path": "/v2/email/identities",
        "params": [("Domain", "grüße.example"), ("ሴ", "bar baz")],
        "query": "Domain=gr%c3%bc%c3%9fe.example&%e1%88%b4=bar%20baz",
        "headers": [("Host", SES_HOST)],
    },
    {
        "name": "get-query-reserved",
        "method": "GET",
        "path": "/v2/email/suppression/addresses",
        "params": [("NextToken", "a/b+c=="),
                   ("StartDate", "2026-02-01T00:00:00Z")],
        "headers": [("Host", SES_HOST)],
    },
    {
        "name": "get-path-utf8",
        "method": "GET",
        "path": "/v2/email/identities/grüße.example",
        "headers": [("Host", SES_HOST)],
    },
    {
        "name": "get-path-reserved",
        "method": "GET",
        "path": "/v2/email/identities/alice+news@example.com",
        "headers": [("Host", SES_HOST)],
    },
    {
        "name": "get-path-space",
        "method": "GET",
        "path": "/v2/email/contact-lists/weekly news/contacts",
        "headers": [("Host", SES_HOST)],
    },
    {
        "name": "get-header-trim",
        "method": "GET",
        "path": "/v2/email/account",
        "headers": [("Host", SES_HOST),
                    ("X-Ferry-Note", "   padded  both   ends \t "),
                    ("X-Ferry-Inner", "a  b\t\tc \t d")],
    },
    {
        # Names differ in case but are one header once lowercased.
        "name": "get-header-duplicate-key",
        "method": "GET",
        "path": "/v2/email/account",
        "headers": [("Host", SES_HOST),
                    ("X-Ferry-Tag", "first"),
                    ("X-Ferry-Other", "between"),
                    ("x-ferry-tag", "second"),
                    ("X-FERRY-TAG", "third")],
    },
    {
        "name": "get-header-multiline",
        "method": "GET",
        "path": "/v2/email/account",
        "headers": [("Host", SES_HOST),
                    ("X-Ferry-Note", "first line\r\n  second line\n"
                                     "\tthird   line\n")],
    },
    {
        # Values of one name keep the order they were sent in, unsorted.
        "name": "get-header-value-order",
        "method": "GET",
        "path": "/v2/email/account",
        "headers": [("Host", SES_HOST),
                    ("X-Ferry-Hop", "delta"),
                    ("X-Ferry-Hop", "alpha"),
                    ("X-Ferry-Hop", "charlie"),
                    ("X-Ferry-Hop", "bravo")],
    },
    {
        "name": "get-session-token",
        "method": "GET",
        "path": "/v2/email/account",
        "headers": [("Host", SES_HOST)],
        "token": SESSION_TOKEN,
    },
    {
        # Header names unsorted and in mixed case.
        "name": "post-form-body",
        "method": "POST",
        "path": "/",
        "headers": [("Host", "email.us-east-1.amazonaws.com"),
                    ("X-Ferry-Trace", "1"),
                    ("Content-Type", FORM_TYPE)],
        "body": "Action=SendRawEmail&Source=alice%40example.com"
                "&RawMessage.Data=U3ViamVjdDogaGkNCg0KaGkNCg%3D%3D",
        "region": "us-east-1",
        "service": "email",
    },
    {
        "name": "post-host-port",
        "method": "POST",
        "path": "/v2/email/outbound-emails",
        "headers": [("Host", "127.0.0.1:45102"),
                    ("Content-Type", "application/json")],
        "body": '{"FromEmailAddress":"alice@example.com"}',
    },
]


class RecordingSigV4Auth(botocore.auth.SigV4Auth):
    """SigV4Auth that keeps the canonical request and string to sign."""

    def canonical_request(self, request):
        self.last_canonical_request = super().canonical_request(request)
        return self.last_canonical_request

    def string_to_sign(self, request, canonical_request):
        self.last_string_to_sign = super().string_to_sign(request,
                                                          canonical_request)
        return self.last_string_to_sign


def encode_query(params):
    """Percent-encode params the way a client puts them in a URL."""
    return "&".join(quote(name, safe="-_.~") + "=" +
                    quote(value, safe="-_.~") for name, value in params)


def sign(case):
    """Sign one case with botocore.

    Return the request as the C signer takes it and botocore's canonical
    request, string to sign and Authorization value.
    """
    region = case.get("region", "eu-west-1")
    service = case.get("service", "ses")
    body = case.get("body", "")
    token = case.get("token")
    params = case.get("params", [])
    host = case["headers"][0][1]

    request = AWSRequest(method=case["method"],
                         url="http://" + host + case["path"],
                         params=params, data=body.encode())
    for name, value in case["headers"]:
        request.headers[name] = value      # appends, keeping repeated names
    signer = RecordingSigV4Auth(
        Credentials(ACCESS_KEY_ID, SECRET_ACCESS_KEY, token), service,
        region)
    with mock.patch.object(botocore.auth, "get_current_datetime",
                           return_value=SIGNED_AT):
        signer.add_auth(request)

    c_request = {
        "method": case["method"],
        "path": case["path"],
        "query": case.get("query", encode_query(params)) or None,
        "headers": [[name, value] for name, value in case["headers"]],
        "body": body,
        "access_key_id": ACCESS_KEY_ID,
        "secret_access_key": SECRET_ACCESS_KEY,
        "session_token": token,
        "region": region,
        "service": service,
        "time": calendar.timegm(SIGNED_AT.utctimetuple()),
        "amz_date": request.context["timestamp"],
    }
    return c_request, {
        "creq": signer.last_canonical_request,
        "sts": signer.last_string_to_sign,
        "authz": request.headers["Authorization"],
    }


def main():
    names = []
    for case in CASES:
        c_request, outputs = sign(case)
        with open(os.path.join(HERE, case["name"] + ".req.json"), "w",
                  encoding="utf-8") as f:
            json.dump(c_request, f, ensure_ascii=False, indent=2)
            f.write("\n")
        for suffix, text in outputs.items():
            path = os.path.join(HERE, case["name"] + "." + suffix)
            with open(path, "wb") as f:
                f.write(text.encode("utf-8"))
        names.append(case["name"])
    with open(os.path.join(HERE, "cases.list"), "w") as f:
        f.write("\n".join(names) + "\n")
    print(f"botocore {botocore.__version__}: wrote {len(names)} cases "
          f"for X-Amz-Date {SIGNED_AT:%Y%m%dT%H%M%SZ}")


if __name__ == "__main__":
    main()
