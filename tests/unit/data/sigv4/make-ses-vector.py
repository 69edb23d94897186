#!/usr/bin/env python3
"""Write the SES SendEmail signing vector that tests/unit/test_sigv4.c checks.

botocore's SigV4Auth signs one SendEmail request whose session token ends in
a space and whose Content-Type has two spaces after the semicolon, at a
fixed time. The request and botocore's canonical request, string to sign
and Authorization value go to ses-send-email.{body,creq,sts,authz} beside
this script. Run it from anywhere with botocore installed; the output is
the same on every run for a given botocore version.
"""

import datetime
import json
import os
from unittest import mock

import botocore
import botocore.auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

HERE = os.path.dirname(os.path.abspath(__file__))
HOST = "127.0.0.1:4581"
PATH = "/v2/email/outbound-emails"
CONTENT_TYPE = "application/json;  charset=utf-8"
SIGNED_AT = datetime.datetime(2026, 3, 1, 9, 30, 15,
                              tzinfo=datetime.timezone.utc)
CREDENTIALS = Credentials("AKIDFERRYLOCAL", "ferry-local-secret",
                          "FerrySessionToken/EXAMPLE+token== ")
BODY = json.dumps({
    "Content": {"Raw": {"Data": "U3ViamVjdDogaGkNCg0KaGVsbG8NCg=="}},
    "Destination": {"ToAddresses": ["bob@example.org"]},
    "EmailTags": [{"Name": "ferry-envelope-id",
                   "Value": "01JFERRYTESTVECTOR00000000"}],
    "FromEmailAddress": "alice@example.com",
}, separators=(",", ":"), sort_keys=True).encode()


class RecordingSigV4Auth(botocore.auth.SigV4Auth):
    """SigV4Auth that keeps the canonical request and string to sign."""

    def canonical_request(self, request):
        self.last_canonical_request = super().canonical_request(request)
        return self.last_canonical_request

    def string_to_sign(self, request, canonical_request):
        self.last_string_to_sign = super().string_to_sign(request,
                                                          canonical_request)
        return self.last_string_to_sign


def main():
    request = AWSRequest(method="POST", url=f"http://{HOST}{PATH}",
                         data=BODY,
                         headers={"Host": HOST,
                                  "Content-Type": CONTENT_TYPE})
    signer = RecordingSigV4Auth(CREDENTIALS, "ses", "us-east-1")
    with mock.patch.object(botocore.auth, "get_current_datetime",
                           return_value=SIGNED_AT):
        signer.add_auth(request)
    outputs = {
        "body": BODY,
        "creq": signer.last_canonical_request.encode(),
        "sts": signer.last_string_to_sign.encode(),
        "authz": request.headers["Authorization"].encode(),
    }
    for suffix, data in outputs.items():
        with open(os.path.join(HERE, f"ses-send-email.{suffix}"), "wb") as f:
            f.write(data)
    print(f"botocore {botocore.__version__}: wrote ses-send-email.* "
          f"for X-Amz-Date {request.context['timestamp']}")


if __name__ == "__main__":
    main()
