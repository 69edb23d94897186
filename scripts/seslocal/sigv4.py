"""AWS Signature Version 4 verification with botocore's signer as the reference.

The verifier rebuilds the request from what the client sent (method, request
target, the headers named in SignedHeaders with their received values, the
body and the X-Amz-Date timestamp) and calls botocore.auth.SigV4Auth for the
canonical request, string to sign and signature. Neither the header set nor
the timestamp comes from botocore itself, so any correct SigV4 client passes,
not only botocore. The signing key is derived as SigV4Auth.signature derives
it, once per access key and scope date, and reused.
"""

import datetime
import hashlib
import hmac
import re
from dataclasses import dataclass, field
from email.message import Message

from botocore.auth import SigV4Auth
from botocore.awsrequest import HTTPHeaders
from botocore.credentials import Credentials

from . import temporary
from .errors import ApiError

ALGORITHM = "AWS4-HMAC-SHA256"
SERVICE_NAME = "ses"
AMZ_DATE_FORMAT = "%Y%m%dT%H%M%SZ"
# AMZ_DATE_FORMAT with two-digit fields, which datetime() reads faster than strptime.
AMZ_DATE_DIGITS = re.compile(r"(\d{4})(\d\d)(\d\d)T(\d\d)(\d\d)(\d\d)Z")
# Maximum number of signing keys a verifier caches. A full cache is emptied before the next key is added.
MAX_CACHED_SIGNING_KEYS = 64
# AWS rejects a request whose X-Amz-Date is more than 5 minutes from its clock.
MAX_CLOCK_SKEW = datetime.timedelta(minutes=5)

SIGNATURE_MISMATCH_TEXT = (
    "The request signature we calculated does not match the signature you "
    "provided. Check your AWS Secret Access Key and signing method. Consult "
    "the service documentation for details."
)


def incomplete_signature(message: str) -> ApiError:
    return ApiError(403, "IncompleteSignatureException", message)


def signature_mismatch(message: str) -> ApiError:
    return ApiError(403, "SignatureDoesNotMatch", message)


@dataclass(frozen=True)
class Authorization:
    """The parts of an "AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=..." header."""

    access_key_id: str
    scope_date: str
    scope_region: str
    scope_service: str
    scope_terminator: str
    signed_headers: list[str]
    signature: str


def parse_authorization(value: str) -> Authorization:
    """Parse an Authorization header value, raising IncompleteSignatureException if malformed."""
    algorithm, _, rest = value.strip().partition(" ")
    if algorithm != ALGORITHM:
        raise incomplete_signature(
            f"Authorization header must use the {ALGORITHM} algorithm, "
            f"got '{algorithm}'."
        )
    fields = {}
    for part in rest.split(","):
        name, separator, field_value = part.strip().partition("=")
        if separator:
            fields[name] = field_value
    missing = [name for name in ("Credential", "SignedHeaders", "Signature") if name not in fields]
    if missing:
        raise incomplete_signature(
            "Authorization header requires the parameters "
            + ", ".join(f"'{name}'" for name in missing)
            + f". Authorization={value}"
        )
    scope = fields["Credential"].split("/")
    if len(scope) != 5:
        raise incomplete_signature(
            "Credential must have the form "
            "ACCESS_KEY_ID/YYYYMMDD/REGION/SERVICE/aws4_request, "
            f"got '{fields['Credential']}'."
        )
    signed_headers = [name for name in fields["SignedHeaders"].lower().split(";") if name]
    return Authorization(
        access_key_id=scope[0],
        scope_date=scope[1],
        scope_region=scope[2],
        scope_service=scope[3],
        scope_terminator=scope[4],
        signed_headers=signed_headers,
        signature=fields["Signature"],
    )


@dataclass
class ReceivedRequest:
    """The request attributes that SigV4Auth reads to sign a request.

    It takes the place of botocore's AWSRequest, whose preparation (a copy
    of the headers and the body) the verifier does not need. The URL has no
    separate query parameters, so params stays empty.
    """

    method: str
    url: str
    headers: HTTPHeaders
    body: bytes
    context: dict
    params: dict = field(default_factory=dict)


class ReceivedHeadersSigV4Auth(SigV4Auth):
    """SigV4Auth that canonicalizes exactly the headers the client signed.

    botocore's own headers_to_sign picks every request header except a fixed
    exclusion list, and would drop a signed User-Agent. The verifier instead
    uses the client's SignedHeaders list with the received values. signature()
    uses a signing key that the caller derived with signing_key().
    """

    def __init__(self, credentials: Credentials, region: str, signed_headers: HTTPHeaders,
                 signing_key: bytes):
        super().__init__(credentials, SERVICE_NAME, region)
        self._signed_headers = signed_headers
        self._signing_key = signing_key

    def headers_to_sign(self, request):
        return self._signed_headers

    def signature(self, string_to_sign, request):
        return self._sign(self._signing_key, string_to_sign, hex=True)


def signing_key(secret: str, scope_date: str, region: str) -> bytes:
    """Derive the SigV4 signing key with the HMAC chain that SigV4Auth.signature uses."""
    key = f"AWS4{secret}".encode("utf-8")
    for part in (scope_date, region, SERVICE_NAME, "aws4_request"):
        key = hmac.new(key, part.encode("utf-8"), hashlib.sha256).digest()
    return key


def format_amz_date(moment: datetime.datetime) -> str:
    return moment.strftime(AMZ_DATE_FORMAT)


class SigV4Verifier:
    """Verifier for SigV4-signed requests to one region's "ses" service."""

    def __init__(self, region: str, secrets_by_access_key_id: dict[str, str],
                 shared_secret: str | None = None):
        """shared_secret, when given, also admits the temporary keys that
        scripts/sts-local derives from it (see temporary.py)."""
        self.region = region
        self._secrets = dict(secrets_by_access_key_id)
        self._shared_secret = shared_secret
        self._signing_keys: dict[tuple[str, str], bytes] = {}

    def verify(self, method: str, target: str, headers: Message, body: bytes) -> str:
        """Return the access key id that signed the request, or raise ApiError.

        target is the request target as received (path and query, still
        percent-encoded), because the client signed that form.
        """
        authorization_value = headers.get("Authorization")
        if not authorization_value:
            raise ApiError(403, "MissingAuthenticationTokenException", "Missing Authentication Token")
        authorization = parse_authorization(authorization_value)

        amz_date = headers.get("X-Amz-Date")
        if not amz_date:
            raise incomplete_signature(
                "Authorization header requires the 'X-Amz-Date' header, which is missing."
            )
        signed_at = self._parse_amz_date(amz_date)

        secret = self._secret_for(authorization.access_key_id, headers)
        self._check_scope(authorization, amz_date)
        self._check_clock_skew(amz_date, signed_at)
        signed_headers = self._collect_signed_headers(authorization, headers)
        self._check_payload_hash(signed_headers, body)

        expected = self._compute_signature(
            method, target, amz_date, signed_headers, body,
            Credentials(authorization.access_key_id, secret),
        )
        if not hmac.compare_digest(expected.signature, authorization.signature):
            raise signature_mismatch(
                f"{SIGNATURE_MISMATCH_TEXT}\n\n"
                f"The Canonical String for this request should have been\n"
                f"'{expected.canonical_request}'\n\n"
                f"The String-to-Sign should have been\n'{expected.string_to_sign}'\n"
            )
        return authorization.access_key_id

    def _secret_for(self, access_key_id: str, headers: Message) -> str:
        """Return the secret key of access_key_id, or raise ApiError when
        the key id is unknown or, for a temporary key id, when the session
        token is missing or belongs to another key id."""
        secret = self._secrets.get(access_key_id)
        if (secret is None and self._shared_secret is not None
                and temporary.is_temporary(access_key_id)):
            expected = temporary.token_for(self._shared_secret, access_key_id).encode()
            presented = str(headers.get("X-Amz-Security-Token", "")).encode("utf-8", "replace")
            if hmac.compare_digest(presented, expected):
                secret = temporary.secret_for(self._shared_secret, access_key_id)
        if secret is None:
            raise ApiError(
                403,
                "UnrecognizedClientException",
                "The security token included in the request is invalid.",
            )
        return secret

    @staticmethod
    def _parse_amz_date(amz_date: str) -> datetime.datetime:
        digits = AMZ_DATE_DIGITS.fullmatch(amz_date)
        if digits is not None:
            try:
                fields = map(int, digits.groups())
                return datetime.datetime(*fields, tzinfo=datetime.timezone.utc)
            except ValueError:
                pass  # strptime below decides, and its error is the one reported
        try:
            parsed = datetime.datetime.strptime(amz_date, AMZ_DATE_FORMAT)
        except ValueError:
            raise incomplete_signature(
                f"X-Amz-Date must have the ISO 8601 basic form YYYYMMDD'T'HHMMSS'Z', "
                f"got '{amz_date}'."
            ) from None
        return parsed.replace(tzinfo=datetime.timezone.utc)

    def _check_scope(self, authorization: Authorization, amz_date: str) -> None:
        if authorization.scope_date != amz_date[:8]:
            raise signature_mismatch(
                f"Date in Credential scope does not match the date of X-Amz-Date: "
                f"'{authorization.scope_date}' != '{amz_date[:8]}'."
            )
        if authorization.scope_region != self.region:
            raise signature_mismatch(
                f"Credential should be scoped to a valid region: this endpoint "
                f"serves '{self.region}', but the credential scope names "
                f"'{authorization.scope_region}'."
            )
        if authorization.scope_service != SERVICE_NAME:
            raise signature_mismatch(
                f"Credential should be scoped to correct service: '{SERVICE_NAME}', "
                f"not '{authorization.scope_service}'."
            )
        if authorization.scope_terminator != "aws4_request":
            raise signature_mismatch(
                f"Credential should be scoped with a valid terminator: 'aws4_request', "
                f"not '{authorization.scope_terminator}'."
            )

    @staticmethod
    def _check_clock_skew(amz_date: str, signed_at: datetime.datetime) -> None:
        # Wording of AWS's InvalidSignatureException for skewed clocks.
        now = datetime.datetime.now(datetime.timezone.utc)
        if signed_at < now - MAX_CLOCK_SKEW:
            raise ApiError(
                403,
                "InvalidSignatureException",
                f"Signature expired: {amz_date} is now earlier than "
                f"{format_amz_date(now - MAX_CLOCK_SKEW)} ({format_amz_date(now)} - 5 min.)",
            )
        if signed_at > now + MAX_CLOCK_SKEW:
            raise ApiError(
                403,
                "InvalidSignatureException",
                f"Signature not yet current: {amz_date} is still later than "
                f"{format_amz_date(now + MAX_CLOCK_SKEW)} ({format_amz_date(now)} + 5 min.)",
            )

    @staticmethod
    def _collect_signed_headers(authorization: Authorization, headers: Message) -> HTTPHeaders:
        signed = set(authorization.signed_headers)
        required = ["host", "x-amz-date"]
        if headers.get("X-Amz-Security-Token") is not None:
            required.append("x-amz-security-token")
        for name in required:
            if name not in signed:
                raise incomplete_signature(
                    f"'{name}' must be a SignedHeader in the AWS Authorization, "
                    f"but SignedHeaders is '{';'.join(authorization.signed_headers)}'."
                )
        collected = HTTPHeaders()
        for name in authorization.signed_headers:
            values = headers.get_all(name)
            if not values:
                raise incomplete_signature(
                    f"SignedHeaders names '{name}', but the request has no such header."
                )
            for value in values:
                collected[name] = value
        return collected

    @staticmethod
    def _check_payload_hash(signed_headers: HTTPHeaders, body: bytes) -> None:
        declared = signed_headers.get("x-amz-content-sha256")
        if declared is None:
            return
        actual = hashlib.sha256(body).hexdigest()
        if declared.strip() != actual:
            raise signature_mismatch(
                f"The x-amz-content-sha256 header '{declared}' does not match the "
                f"SHA-256 of the request body, {actual}."
            )

    def _signing_key(self, credentials: Credentials, scope_date: str) -> bytes:
        cache_key = (credentials.access_key, scope_date)
        key = self._signing_keys.get(cache_key)
        if key is None:
            key = signing_key(credentials.secret_key, scope_date, self.region)
            if len(self._signing_keys) >= MAX_CACHED_SIGNING_KEYS:
                self._signing_keys.clear()
            self._signing_keys[cache_key] = key
        return key

    def _compute_signature(self, method, target, amz_date, signed_headers, body, credentials):
        request = ReceivedRequest(
            method=method,
            url=f"http://{signed_headers['host']}{target}",
            headers=signed_headers,
            body=body,
            context={"timestamp": amz_date},
        )
        signer = ReceivedHeadersSigV4Auth(credentials, self.region, signed_headers,
                                          self._signing_key(credentials, amz_date[:8]))
        canonical_request = signer.canonical_request(request)
        string_to_sign = signer.string_to_sign(request, canonical_request)
        return ExpectedSignature(
            canonical_request=canonical_request,
            string_to_sign=string_to_sign,
            signature=signer.signature(string_to_sign, request),
        )


@dataclass(frozen=True)
class ExpectedSignature:
    canonical_request: str
    string_to_sign: str
    signature: str
