"""Command line of scripts/ses-local."""

import argparse
import logging
import os
import signal
import sys
import threading
from pathlib import Path

from .faults import FaultInjector
from .ledger import Ledger
from .logs import configure_logging, log_event
from .quota import SendingQuota
from .server import SesLocalServer
from .service import IdentityStore, SesService
from .sigv4 import SigV4Verifier
from .workers import STOP_SIGNALS, WorkerPool, write_pids

DEFAULT_ACCESS_KEY_ID = "AKIDFERRYLOCAL"
DEFAULT_SECRET_ACCESS_KEY = "ferry-local-secret"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ses-local",
        description="Local Amazon SES v2 endpoint for one region: SendEmail with raw content, "
        "GetAccount, ListEmailIdentities, GetEmailIdentity, SigV4 verification, a ledger "
        "of accepted messages and injected faults.",
    )

    parser.add_argument("--region", required=True, help="AWS region this endpoint serves, e.g. us-east-1")
    parser.add_argument("--port", type=int, default=4581, help="TCP port to listen on; 0 picks a free port (default 4581)")
    parser.add_argument("--state-dir", required=True, type=Path,
                        help="directory for ledger.jsonl and messages/<MessageId>.eml; created if missing")
    parser.add_argument("--bind", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")

    parser.add_argument("--access-key-id", default=os.environ.get("FERRY_SES_ACCESS_KEY_ID", DEFAULT_ACCESS_KEY_ID),
                        help=f"accepted access key id (default: $FERRY_SES_ACCESS_KEY_ID or {DEFAULT_ACCESS_KEY_ID})")
    parser.add_argument("--secret-access-key",
                        default=os.environ.get("FERRY_SES_SECRET_ACCESS_KEY", DEFAULT_SECRET_ACCESS_KEY),
                        help="secret access key for --access-key-id, and the secret the temporary keys "
                        "of scripts/sts-local derive from "
                        "(default: $FERRY_SES_SECRET_ACCESS_KEY or the built-in local secret)")

    parser.add_argument("--identity", action="append", default=[],
                        help="verified identity (email address or domain); repeat for more. "
                        "Without any, every sender is accepted")
    parser.add_argument("--max-send-rate", type=float, default=200.0,
                        help="SendQuota.MaxSendRate in recipients per second (default 200)")
    parser.add_argument("--max-24-hour-send", type=float, default=1_000_000.0,
                        help="SendQuota.Max24HourSend in recipients, -1 for unlimited (default 1000000)")
    parser.add_argument("--enforce-rate", action="store_true",
                        help="respond with TooManyRequestsException when --max-send-rate is exceeded")

    parser.add_argument("--latency-ms", type=float, default=0.0,
                        help="delay in milliseconds added before every /v2/ response (default 0)")
    parser.add_argument("--processes", type=int, default=1,
                        help="processes that serve requests on the one listening port (default 1). "
                        "Above 1, the control interface serves only /_ferry/health and /_ferry/ledger, "
                        "because faults, quota, identities, sending and stats are per process")
    parser.add_argument("--worker-pids-file", type=Path,
                        help="write the PIDs of the processes that serve requests to this file, one per line, "
                        "before the listening line: this process with --processes 1, else each child")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                        help="minimum level of the stderr log (default INFO)")
    return parser


def validate_arguments(parser: argparse.ArgumentParser, arguments) -> None:
    if not 0 <= arguments.port <= 65535:
        parser.error(f"--port must be from 0 to 65535, got {arguments.port}")
    if arguments.max_send_rate <= 0:
        parser.error(f"--max-send-rate must be above 0, got {arguments.max_send_rate}")
    if arguments.max_24_hour_send < 0 and arguments.max_24_hour_send != -1:
        parser.error(f"--max-24-hour-send must be -1 or at least 0, got {arguments.max_24_hour_send}")
    if arguments.latency_ms < 0:
        parser.error(f"--latency-ms must be at least 0, got {arguments.latency_ms}")
    if arguments.processes < 1:
        parser.error(f"--processes must be at least 1, got {arguments.processes}")
    if not arguments.access_key_id or not arguments.secret_access_key:
        parser.error("--access-key-id and --secret-access-key must not be empty")


def main(argv=None) -> int:
    parser = build_parser()
    arguments = parser.parse_args(argv)
    validate_arguments(parser, arguments)
    configure_logging(arguments.region, getattr(logging, arguments.log_level))

    faults = FaultInjector()
    try:
        identities = IdentityStore(arguments.identity)
    except ValueError as error:
        parser.error(f"invalid --identity: {error}")
    service = SesService(
        region=arguments.region,
        ledger=Ledger(arguments.state_dir),
        quota=SendingQuota(arguments.max_send_rate, arguments.max_24_hour_send, arguments.enforce_rate),
        faults=faults,
        identities=identities,
    )
    verifier = SigV4Verifier(arguments.region, {arguments.access_key_id: arguments.secret_access_key},
                             shared_secret=arguments.secret_access_key)
    try:
        server = SesLocalServer((arguments.bind, arguments.port), service, verifier, faults,
                                arguments.latency_ms / 1000, arguments.processes)
    except OSError as error:
        log_event(logging.ERROR, "listen_failed", bind=arguments.bind, port=arguments.port, error=error)
        return 1

    host, port = server.server_address[:2]
    log_event(logging.INFO, "listening", bind=host, port=port, state_dir=arguments.state_dir,
              identities=",".join(identities.names()) or None, enforce_rate=arguments.enforce_rate,
              processes=arguments.processes)
    if arguments.processes == 1:
        if arguments.worker_pids_file is not None:
            write_pids(arguments.worker_pids_file, [os.getpid()])
        # A caller may send SIGTERM as soon as it reads the listening line, before serve() sets the handlers.
        signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        print_listening_line(host, port, arguments.region)
        return serve(server, port)

    # Every child wakes up for a new connection and only one accept() succeeds,
    # so the others must get EAGAIN instead of blocking in accept().
    server.socket.setblocking(False)
    pool = WorkerPool(arguments.processes)

    def serve_child(index: int) -> int:
        configure_logging(arguments.region, getattr(logging, arguments.log_level), worker=index)
        return serve(server, port)

    pool.start(server.socket, serve_child)
    if arguments.worker_pids_file is not None:
        write_pids(arguments.worker_pids_file, pool.pids())
    print_listening_line(host, port, arguments.region)
    status = pool.wait()
    log_event(logging.INFO, "stopped", port=port, status=status)
    return status


def print_listening_line(host: str, port: int, region: str) -> None:
    print(f"ses-local: listening on {host}:{port} region={region}", flush=True)


def serve(server: SesLocalServer, port: int) -> int:
    """Serve until SIGTERM or SIGINT. The caller may have blocked both signals, and this unblocks them."""
    def request_stop(signal_number, frame):
        log_event(logging.INFO, "stopping", signal=signal.Signals(signal_number).name)
        # shutdown() waits for serve_forever, which runs in this thread, so it must be called elsewhere.
        threading.Thread(target=server.stop, daemon=True).start()

    for signal_number in STOP_SIGNALS:
        signal.signal(signal_number, request_stop)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
        log_event(logging.INFO, "stopped", port=port)
    return 0

if __name__ == "__main__":
    sys.exit(main())
