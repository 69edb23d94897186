"""The unsigned /_ferry/ control interface; scripts/ses-local documents each endpoint."""

import json
import logging
from urllib.parse import parse_qs

from .faults import FaultSpecError, parse_fault
from .logs import log_event


class ControlError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def handle(server, method: str, parts, body: bytes):
    """Serve one control request. Returns (HTTP status, JSON document)."""
    handlers = {
        "/_ferry/health": {"GET": get_health},
        "/_ferry/ledger": {"GET": get_ledger},
        "/_ferry/stats": {"GET": get_stats},
        "/_ferry/faults": {"GET": get_faults, "POST": post_faults, "DELETE": delete_faults},
        "/_ferry/quota": {"GET": get_quota, "POST": post_quota},
        "/_ferry/identities": {"GET": get_identities, "POST": post_identities},
        "/_ferry/sending": {"GET": get_sending, "POST": post_sending},
    }
    methods = handlers.get(parts.path.rstrip("/"))
    if methods is None:
        return 404, {"message": f"Unknown control endpoint {parts.path}; endpoints are {sorted(handlers)}."}
    handler = methods.get(method)
    if handler is None:
        return 405, {"message": f"{parts.path} accepts {sorted(methods)}, not {method}."}
    if server.processes > 1 and handler not in SHARED_STATE_HANDLERS:
        return 409, {"message": f"{parts.path} is not available with --processes {server.processes}, "
                     "because each process keeps its own faults, quota, identities, sending state and "
                     "stats. Only /_ferry/health and /_ferry/ledger are served; restart ses-local "
                     "with --processes 1 to use the other control endpoints."}
    try:
        return 200, handler(server, parts, body)
    except ControlError as error:
        return error.status, {"message": error.message}


def read_json_object(body: bytes) -> dict:
    try:
        document = json.loads(body or b"{}")
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ControlError(400, f"Request body is not valid JSON: {error}") from None
    if not isinstance(document, dict):
        raise ControlError(400, "Request body must be a JSON object.")
    return document


def log_change(event: str, **fields) -> None:
    log_event(logging.INFO, event, **fields)


def get_health(server, parts, body):
    return {"status": "ok", "region": server.region}


def get_ledger(server, parts, body):
    entries = server.service.ledger.read_entries()
    envelope_ids = parse_qs(parts.query).get("envelope_id")
    if envelope_ids:
        entries = [entry for entry in entries if entry.get("envelope_id") in envelope_ids]
    return entries


# Endpoints whose response is the same from every process of ses-local --processes N.
SHARED_STATE_HANDLERS = {get_health, get_ledger}


def get_stats(server, parts, body):
    return server.service.stats()


def get_faults(server, parts, body):
    return {"fault": server.faults.describe()}


def post_faults(server, parts, body):
    try:
        fault = parse_fault(read_json_object(body))
    except FaultSpecError as error:
        raise ControlError(400, f"Invalid fault: {error}") from None
    server.faults.set(fault)
    log_change("fault_set", fault=fault.kind, probability=fault.probability, count=fault.count,
               seconds=fault.seconds, operations=",".join(fault.operations))
    return {"fault": fault.describe()}


def delete_faults(server, parts, body):
    server.faults.clear()
    log_change("fault_cleared")
    return {"fault": None}


def get_quota(server, parts, body):
    return server.service.quota.snapshot()


def post_quota(server, parts, body):
    document = read_json_object(body)
    allowed = {"max_send_rate", "max_24_hour_send", "enforce_rate"}
    unknown = sorted(set(document) - allowed)
    if unknown:
        raise ControlError(400, f"Unknown quota fields {unknown}; valid fields are {sorted(allowed)}.")
    max_send_rate = document.get("max_send_rate")
    if max_send_rate is not None and not is_number(max_send_rate, minimum_exclusive=0):
        raise ControlError(400, f"max_send_rate must be a number above 0, got {max_send_rate!r}.")
    max_24_hour_send = document.get("max_24_hour_send")
    if max_24_hour_send is not None and not (max_24_hour_send == -1 or is_number(max_24_hour_send, minimum_inclusive=0)):
        raise ControlError(400, f"max_24_hour_send must be -1 (unlimited) or a number from 0, got {max_24_hour_send!r}.")
    enforce_rate = document.get("enforce_rate")
    if enforce_rate is not None and not isinstance(enforce_rate, bool):
        raise ControlError(400, f"enforce_rate must be true or false, got {enforce_rate!r}.")
    if enforce_rate is None and max_send_rate is not None:
        enforce_rate = True  # setting a rate through this endpoint turns enforcement on
    server.service.quota.configure(max_send_rate, max_24_hour_send, enforce_rate)
    snapshot = server.service.quota.snapshot()
    log_change("quota_set", **{name: snapshot[name] for name in ("max_send_rate", "max_24_hour_send", "enforce_rate")})
    return snapshot


def is_number(value, minimum_exclusive=None, minimum_inclusive=None) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    if minimum_exclusive is not None and value <= minimum_exclusive:
        return False
    return minimum_inclusive is None or value >= minimum_inclusive


def get_identities(server, parts, body):
    store = server.service.identities
    return {"identities": store.names(), "pending": store.pending_names()}


def post_identities(server, parts, body):
    request = read_json_object(body)
    identities = request.get("identities")
    pending = request.get("pending", [])
    if not isinstance(identities, list) or not isinstance(pending, list):
        raise ControlError(400, "Body must be {\"identities\": [...], \"pending\": [...]} with lists of "
                           "addresses and domains; \"pending\" is optional.")
    try:
        server.service.identities.replace(identities, pending)
    except ValueError as error:
        raise ControlError(400, f"Invalid identities: {error}") from None
    store = server.service.identities
    names = store.names()
    pending = store.pending_names()
    if names or pending:
        log_change("identities_set", identities=",".join(names) or "(none)",
                   pending=",".join(pending) or "(none)")
    else:
        log_change("identities_set", identities="(none, all senders allowed)")
    return {"identities": names, "pending": pending}


def get_sending(server, parts, body):
    return {"enabled": server.service.sending_enabled}


def post_sending(server, parts, body):
    enabled = read_json_object(body).get("enabled")
    if not isinstance(enabled, bool):
        raise ControlError(400, f"Body must be {{\"enabled\": true|false}}, got enabled={enabled!r}.")
    server.service.set_sending_enabled(enabled)
    log_change("sending_set", enabled=enabled)
    return {"enabled": enabled}
