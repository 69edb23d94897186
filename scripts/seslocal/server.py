"""HTTP server: SES v2 routes under /v2/, the control interface under /_ferry/."""

import http.client
import ipaddress
import json
import logging
import re
import select
import socket
import struct
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

from . import control
from .errors import MAX_RAW_MESSAGE_BASE64_BYTES, ApiError, message_too_large
from .faults import (
    ERROR_FAULTS,
    GET_ACCOUNT,
    GET_EMAIL_IDENTITY,
    LIST_EMAIL_IDENTITIES,
    SEND_EMAIL,
    FaultInjector,
)
from .httpheaders import PLAIN_REQUEST_LINE, read_headers
from .logs import log_event, logger
from .service import SesService, parse_json_object, random_uuid
from .sigv4 import SigV4Verifier

# A SendEmail body is the base64 message plus a little JSON, so a larger body
# is rejected as too large without being kept in memory. Bodies up to
# MAX_DRAINED_BODY_BYTES are read and discarded first, so that the client is
# still reading when the error is sent. Larger bodies get the error and the
# connection is closed.
MAX_REQUEST_BODY_BYTES = MAX_RAW_MESSAGE_BASE64_BYTES + 8 * 1024 * 1024
MAX_DRAINED_BODY_BYTES = 256 * 1024 * 1024
READ_CHUNK_BYTES = 1024 * 1024
HANG_POLL_SECONDS = 0.2

GET_EMAIL_IDENTITY_PATH = re.compile(r"^/v2/email/identities/(?P<identity>[^/]+)$")
# ListEmailIdentities is GET /v2/email/identities in the sesv2 model bundled
# with botocore 1.43.11 and POST /v2/email/list-identities in 1.44.8, so both
# routes are served.
STATIC_ROUTES = {
    ("POST", "/v2/email/outbound-emails"): SEND_EMAIL,
    ("GET", "/v2/email/account"): GET_ACCOUNT,
    ("GET", "/v2/email/identities"): LIST_EMAIL_IDENTITIES,
    ("POST", "/v2/email/list-identities"): LIST_EMAIL_IDENTITIES,
}


def route(method: str, path: str) -> tuple[str | None, dict]:
    """Return the SES v2 operation for a request and its URI parameters."""
    operation = STATIC_ROUTES.get((method, path))
    if operation is not None:
        return operation, {}
    match = GET_EMAIL_IDENTITY_PATH.match(path)
    if method == "GET" and match:
        return GET_EMAIL_IDENTITY, {"EmailIdentity": unquote(match.group("identity"))}
    return None, {}


def is_loopback_client(host: str) -> bool:
    address = ipaddress.ip_address(host.split("%")[0])
    mapped = getattr(address, "ipv4_mapped", None)  # ::ffff:127.0.0.1 on a dual-stack socket
    return (mapped or address).is_loopback


class BodyTooLarge(Exception):
    def __init__(self, length: int, drained: bool):
        super().__init__(f"request body of {length} bytes is too large")
        self.length = length
        self.drained = drained


class SesLocalServer(ThreadingHTTPServer):
    """ThreadingHTTPServer that carries the service state for its handlers."""

    daemon_threads = True
    allow_reuse_address = True
    # Python's default listen backlog of 5 drops connections when a worker
    # opens dozens at once, and the dropped ones wait out a client timeout.
    request_queue_size = 128

    def __init__(self, address, service: SesService, verifier: SigV4Verifier,
                 faults: FaultInjector, latency_seconds: float, processes: int = 1):
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.service = service
        self.region = service.region
        self.verifier = verifier
        self.faults = faults
        self.latency_seconds = latency_seconds
        self.processes = processes
        self.stopping = threading.Event()
        # (whole second, Date header value) of the last response
        self.date_header: tuple[int | None, str] = (None, "")
        super().__init__(address, SesRequestHandler)

    def stop(self) -> None:
        """Stop serve_forever from another thread and release hanging requests."""
        self.stopping.set()
        self.faults.clear()
        self.shutdown()


class SesRequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Responses are buffered, so that _send_json sends headers and body in
    # one write. http.server's own error responses leave when
    # handle_one_request or finish flushes the buffer.
    wbufsize = -1
    # With Nagle's algorithm on, the second write of a response larger than
    # the buffer would wait for the client's delayed ACK (40 ms on Linux).
    disable_nagle_algorithm = True
    server_version = "ses-local"

    def version_string(self) -> str:
        return self.server_version

    def date_time_string(self, timestamp=None) -> str:
        if timestamp is not None:
            return super().date_time_string(timestamp)
        # The Date header changes once a second, so it is formatted once a second.
        second = int(time.time())
        cached_second, text = self.server.date_header
        if cached_second != second:
            text = super().date_time_string(second)
            self.server.date_header = (second, text)
        return text

    def parse_request(self) -> bool:
        """Parse a plain HTTP/1.1 request here, and any other with http.server.

        The result is that of BaseHTTPRequestHandler.parse_request, but the
        headers are read with httpheaders.read_headers, which is faster.
        """
        match = PLAIN_REQUEST_LINE.fullmatch(self.raw_requestline)
        if match is None:
            return super().parse_request()
        command, path = (word.decode("ascii") for word in match.groups())
        self.command = command
        self.request_version = "HTTP/1.1"
        self.requestline = self.raw_requestline.decode("ascii").rstrip("\r\n")
        self.close_connection = False
        # As http.server does, so that "//host/path" cannot read as a URL without a scheme.
        if path.startswith("//"):
            path = "/" + path.lstrip("/")
        self.path = path
        try:
            self.headers = read_headers(self.rfile)
        except http.client.LineTooLong as error:
            self.send_error(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "Line too long", str(error))
            return False
        except http.client.HTTPException as error:
            self.send_error(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "Too many headers", str(error))
            return False
        connection = self.headers.get("Connection", "").lower()
        if connection == "close":
            self.close_connection = True
        elif connection == "keep-alive":
            self.close_connection = False
        if self.headers.get("Expect", "").lower() == "100-continue":
            return self.handle_expect_100()
        return True

    def handle_expect_100(self) -> bool:
        # The client waits for "100 Continue" before it sends the body, so it must not stay in the buffer.
        accepted = super().handle_expect_100()
        self.wfile.flush()
        return accepted

    def do_GET(self):
        self._handle()

    def do_POST(self):
        self._handle()

    def do_DELETE(self):
        self._handle()

    def do_PUT(self):
        self._handle()

    def log_message(self, format, *args):
        # http.server's own access lines are replaced by one "request" line per request.
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("http.server %s", format % args)

    # Request entry point

    def _handle(self) -> None:
        started = time.monotonic()
        self.request_id = random_uuid()
        self.log_fields = {"method": self.command, "path": self.path}
        self.log_level = logging.INFO
        target = self.path
        if target.startswith(("http://", "https://")):
            parts = urlsplit(target)
            target = parts.path + (f"?{parts.query}" if parts.query else "")
        parts = urlsplit(target)
        try:
            if parts.path.startswith("/_ferry/"):
                self._handle_control(parts)
            else:
                self._handle_api(target, parts)
        except (BrokenPipeError, ConnectionResetError) as error:
            self.close_connection = True
            self.log_fields["outcome"] = "client_disconnected"
            self.log_fields["error"] = repr(error)
            self.log_level = logging.WARNING
        except Exception as error:  # a bug or an I/O failure such as a full disk
            logger.exception("request failed: method=%s path=%s", self.command, self.path)
            self.close_connection = True
            self.log_fields["outcome"] = "internal_error"
            self.log_fields["error"] = repr(error)
            self.log_level = logging.ERROR
            self._send_internal_error(error)
        self.log_fields["duration_ms"] = round((time.monotonic() - started) * 1000, 1)
        log_event(self.log_level, "request", **self.log_fields)

    # SES v2 API

    def _handle_api(self, target: str, parts) -> None:
        service: SesService = self.server.service
        operation, path_params = route(self.command, parts.path)
        self.log_fields["operation"] = operation or "unknown"
        drop_response = False
        try:
            try:
                body = self._read_body()
            except BodyTooLarge as error:
                if not error.drained:
                    self.close_connection = True
                raise message_too_large(error.length) from None
            self.log_fields["access_key_id"] = self.server.verifier.verify(
                self.command, target, self.headers, body
            )
            if operation is None:
                raise ApiError(404, "UnknownOperationException", f"No SES v2 operation for {self.command} {parts.path}.")
            if self.server.latency_seconds:
                time.sleep(self.server.latency_seconds)

            matched = self.server.faults.match(operation)
            if matched is not None:
                fault, hang_release = matched
                self.log_fields["fault"] = fault.kind
                if fault.kind in ERROR_FAULTS:
                    raise fault.error(self.server.region)
                if fault.kind == "hang":
                    self._hang_until_released(fault, hang_release)
                    self._finish_without_response(operation, "hang")
                    return
                if fault.kind == "reset":
                    self._reset_connection()
                    self._finish_without_response(operation, "reset")
                    return
                drop_response = fault.kind == "drop_response"

            result, outcome = self._call_operation(service, operation, path_params, parts, body)
            if drop_response:
                self._reset_connection()
                self._finish_without_response(operation, "drop_response")
                return
            service.record_outcome(operation, outcome)
            self.log_fields["outcome"] = outcome
            self._send_json(200, result)
        except ApiError as error:
            self.log_fields["error"] = error.message.splitlines()[0]
            self.log_level = logging.WARNING
            if drop_response:
                # The client never sees this error, because the response is dropped.
                self.log_fields["error_code"] = error.code
                self._reset_connection()
                self._finish_without_response(operation, "drop_response")
                return
            self.log_fields["outcome"] = error.code
            service.record_outcome(operation or "unknown", error.code)
            self._send_error(error)

    def _call_operation(self, service: SesService, operation, path_params, parts, body):
        if operation == SEND_EMAIL:
            entry = service.send_email(body)
            self.log_fields.update(
                message_id=entry["message_id"],
                envelope_id=entry["envelope_id"],
                attempt=entry["attempt"],
                size=entry["size"],
            )
            return {"MessageId": entry["message_id"]}, "accepted"
        if operation == GET_ACCOUNT:
            return service.get_account(), "ok"
        if operation == LIST_EMAIL_IDENTITIES:
            if self.command == "GET":
                query = {name: values[-1] for name, values in parse_qs(parts.query).items()}
            else:
                query = parse_json_object(body)
            return service.list_email_identities(query.get("PageSize"), query.get("NextToken")), "ok"
        return service.get_email_identity(path_params["EmailIdentity"]), "ok"

    def _finish_without_response(self, operation: str, outcome: str) -> None:
        self.close_connection = True
        self.server.service.record_outcome(operation, outcome)
        self.log_fields["outcome"] = outcome
        self.log_level = logging.WARNING

    # Connection faults

    def _hang_until_released(self, fault, release: threading.Event) -> None:
        """Hold the request without a response until released, expired or abandoned by the client."""
        deadline = fault.expires_at
        connection = self.connection
        while not release.is_set() and not self.server.stopping.is_set():
            if deadline is not None and time.time() >= deadline:
                return
            readable, _, _ = select.select([connection], [], [], HANG_POLL_SECONDS)
            if not readable:
                continue
            try:
                peeked = connection.recv(1, socket.MSG_PEEK)
            except OSError:
                return
            if not peeked:
                return  # the client closed its side, so it gave up
            release.wait(HANG_POLL_SECONDS)  # the client sent more bytes; keep ignoring them

    def _reset_connection(self) -> None:
        """Close the socket with SO_LINGER 0 so that the client receives a TCP reset."""
        self.close_connection = True
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        # The fd is released once finish() closes rfile, and that close sends the reset.
        self.connection.close()

    # Control interface

    def _handle_control(self, parts) -> None:
        self.log_fields["operation"] = "control"
        try:
            body = self._read_body()
        except BodyTooLarge as error:
            self.close_connection = not error.drained
            self._send_json(413, {"message": f"Control request body of {error.length} bytes is too large."})
            return
        except ApiError as error:
            self._send_json(error.status, {"message": error.message})
            return
        if not is_loopback_client(self.client_address[0]):
            status, response = 403, {"message": "The /_ferry/ control interface accepts loopback clients only."}
        else:
            status, response = control.handle(self.server, self.command, parts, body)
        self.log_fields["status"] = status
        if status >= 400:
            self.log_level = logging.WARNING
            self.log_fields["error"] = response.get("message")
        self._send_json(status, response)

    # Request body and responses

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            return self._read_chunked_body()
        length_text = self.headers.get("Content-Length")
        if not length_text:
            return b""
        try:
            length = int(length_text)
        except ValueError:
            length = -1
        if length < 0:
            self.close_connection = True
            raise ApiError(400, "BadRequestException", f"Invalid Content-Length: {length_text!r}.")
        if length > MAX_REQUEST_BODY_BYTES:
            drained = length <= MAX_DRAINED_BODY_BYTES
            if drained:
                self._discard_body(length)
            raise BodyTooLarge(length, drained)
        return self.rfile.read(length)

    def _discard_body(self, length: int) -> None:
        remaining = length
        while remaining > 0:
            chunk = self.rfile.read(min(remaining, READ_CHUNK_BYTES))
            if not chunk:
                break
            remaining -= len(chunk)

    def _read_chunked_body(self) -> bytes:
        chunks = []
        total = 0
        while True:
            size_line = self.rfile.readline(1024)
            try:
                size = int(size_line.split(b";")[0].strip(), 16)
            except ValueError:
                self.close_connection = True
                raise ApiError(400, "BadRequestException", f"Invalid chunk size line: {size_line!r}.") from None
            if size == 0:
                while self.rfile.readline(1024).strip():
                    pass  # trailer fields are ignored
                return b"".join(chunks)
            total += size
            if total > MAX_REQUEST_BODY_BYTES:
                self.close_connection = True
                raise BodyTooLarge(total, drained=False)
            chunks.append(self.rfile.read(size))
            self.rfile.readline(1024)

    def _send_json(self, status: int, document, extra_headers=None) -> None:
        data = json.dumps(document).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-amzn-RequestId", self.request_id)
        for name, value in (extra_headers or {}).items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()
        self.log_fields.setdefault("status", status)

    def _send_internal_error(self, error: Exception) -> None:
        try:
            self._send_error(ApiError(500, "InternalFailure", f"ses-local failed to process the request: {error!r}"))
        except OSError:
            pass  # the connection is already broken, and the failure is logged

    def _send_error(self, error: ApiError) -> None:
        self._send_json(error.status, {"message": error.message}, {"x-amzn-ErrorType": error.code})
