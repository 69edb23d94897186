"""Temporary keys that scripts/sts-local issues and ses-local checks.

Each AssumeRoleWithWebIdentity call to sts-local returns a new access key
id that starts with ASIA, as the temporary keys of AWS do. The secret key
and the session token of that key id are HMAC-SHA256 values of it under
the secret that both stand-ins get as --secret-access-key, so ses-local
computes both from the key id alone. A request signed with the keys of
one call and the session token of another is then rejected, as AWS
rejects it.
"""

import base64
import hashlib
import hmac
import secrets

PREFIX = "ASIA"
KEY_ID_LENGTH = 20


def _digest(shared_secret: str, purpose: str, access_key_id: str) -> bytes:
    message = f"{purpose}:{access_key_id}".encode()
    return hmac.new(shared_secret.encode(), message, hashlib.sha256).digest()


def is_temporary(access_key_id: str) -> bool:
    """Return True for a key id of the form sts-local issues."""
    return access_key_id.startswith(PREFIX) and len(access_key_id) == KEY_ID_LENGTH


def secret_for(shared_secret: str, access_key_id: str) -> str:
    """Return the secret access key of a temporary key id."""
    return base64.b64encode(_digest(shared_secret, "secret", access_key_id)).decode()[:40]


def token_for(shared_secret: str, access_key_id: str) -> str:
    """Return the session token that belongs to a temporary key id."""
    digest = _digest(shared_secret, "token", access_key_id)
    return "FerrySts" + base64.urlsafe_b64encode(digest).decode().rstrip("=")


def issue(shared_secret: str) -> tuple[str, str, str]:
    """Return a new temporary key id, its secret key and its session token."""
    suffix_length = KEY_ID_LENGTH - len(PREFIX)
    access_key_id = PREFIX + secrets.token_hex(suffix_length // 2).upper()
    return (access_key_id, secret_for(shared_secret, access_key_id),
            token_for(shared_secret, access_key_id))
