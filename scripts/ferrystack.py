"""Start and stop a whole local Ferry: a Kafka broker, one ses-local per
region, ferry-ingress and a ferry-deliver worker per primary region; on
request also a ferry-controller and a takeover worker in US West.

Used by scripts/demo and by the end-to-end tests. Every process listens on
127.0.0.1 only, is started by this module and is stopped by its PID.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.path.join(ROOT, os.environ.get("BUILD", "build"))

PRIMARY_REGIONS = ["us-east-1", "eu-west-1"]
SECONDARY_REGION = "us-west-2"
ACCESS_KEY_ID = "AKIDFERRYLOCAL"
SECRET_ACCESS_KEY = "ferry-local-secret"

# Organizations of the demo and the tests: one per way of routing mail.
ORGANIZATIONS = [
    {"name": "acme", "home_region": "us-east-1", "domain": "acme.example",
     "multi_region": True, "integration": "smtp"},
    {"name": "globex", "home_region": "us-east-1", "domain": "globex.example",
     "multi_region": True, "integration": "m365_api"},
    {"name": "bergmann", "home_region": "eu-west-1",
     "domain": "bergmann.example", "multi_region": False,
     "integration": "smtp"},
    {"name": "lumiere", "home_region": "eu-west-1",
     "domain": "lumiere.example", "multi_region": True,
     "integration": "smtp"},
]


def topic_for(org):
    """Return the topic the ingress must route an organization's mail to."""
    pinned = not org["multi_region"] or org["integration"] != "smtp"
    return "mail.%s%s" % (org["home_region"], ".pinned" if pinned else "")


def wait_for_port(port, timeout, process=None):
    """Wait until something accepts TCP connections on 127.0.0.1:port."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True
        except OSError:
            time.sleep(0.1)
    return False


class StackError(Exception):
    """A part of the stack failed to start; the message names the part."""


class Stack:
    """A local Ferry whose ports all derive from one base port.

    base + 0: Kafka broker, base + 1: its KRaft controller,
    base + 10 + i: ses-local of region i, base + 20: ferry-ingress SMTP.
    With http=True the daemons serve /metrics: ferry-ingress on base + 30,
    ferry-controller on base + 31, the worker of primary region i on
    base + 32 + i, each worker from its own copy of the configuration.
    """

    def __init__(self, state_dir, base_port=19092, ack_timeout_ms=30000,
                 log=print, deliver_settings=None, extra_config="",
                 http=False, ingress_settings=None):
        """deliver_settings overrides keys of the deliver section and
        ingress_settings adds keys to the ingress section;
        extra_config is YAML text appended to the configuration, for
        sections the stack does not write itself (with http=True, not
        the controller section)."""
        self.state_dir = state_dir
        self.deliver_settings = {
            "max_in_flight": 16,
            "retry_initial_ms": 200,
            "retry_max_ms": 5000,
            "request_timeout_ms": 10000,
        }
        self.deliver_settings.update(deliver_settings or {})
        self.ingress_settings = dict(ingress_settings or {})
        self.extra_config = extra_config
        self.base_port = base_port
        self.kafka_port = base_port
        self.bootstrap_servers = "127.0.0.1:%d" % base_port
        self.smtp_port = base_port + 20
        self.ack_timeout_ms = ack_timeout_ms
        self.log = log
        self.http = http
        self.http_ports = {"ingress": base_port + 30,
                           "controller": base_port + 31}
        for i, region in enumerate(PRIMARY_REGIONS):
            self.http_ports["deliver-" + region] = base_port + 32 + i
        self.regions = PRIMARY_REGIONS + [SECONDARY_REGION]
        self.ses_ports = {r: base_port + 10 + i
                          for i, r in enumerate(self.regions)}
        self.config_path = os.path.join(state_dir, "ferry.yaml")
        self.kafka_dir = os.path.join(state_dir, "kafka")
        self.processes = {}     # name -> (Popen, log file object)
        self.kafka_started = False

    # Paths and environment

    def ses_dir(self, region):
        return os.path.join(self.state_dir, "ses-" + region)

    def log_path(self, name):
        return os.path.join(self.state_dir, name + ".log")

    def kafka_env(self):
        env = dict(os.environ)
        env["FERRY_KAFKA_PORT"] = str(self.kafka_port)
        env["FERRY_KAFKA_CONTROLLER_PORT"] = str(self.kafka_port + 1)
        env["FERRY_KAFKA_DIR"] = self.kafka_dir
        env["FERRY_REGIONS"] = " ".join(PRIMARY_REGIONS)
        return env

    def daemon_env(self):
        env = dict(os.environ)
        env["AWS_ACCESS_KEY_ID"] = ACCESS_KEY_ID
        env["AWS_SECRET_ACCESS_KEY"] = SECRET_ACCESS_KEY
        env.pop("AWS_SESSION_TOKEN", None)
        return env

    # Configuration

    def write_config(self):
        lines = [
            "# Written by scripts/ferrystack.py for a local run.",
            "log_level: info",
            "kafka:",
            "  bootstrap_servers: %s" % self.bootstrap_servers,
            "  properties:",
            "    client.id: ferry-local",
            "ingress:",
            "  listen: 127.0.0.1:%d" % self.smtp_port,
            "  hostname: ingress.ferry.test",
            "  regions: [%s]" % ", ".join(PRIMARY_REGIONS),
            "  max_recipients: 50",
            "  ack_timeout_ms: %d" % self.ack_timeout_ms,
            "  durability: relaxed",
        ]
        lines += ["  %s: %s" % item for item in self.ingress_settings.items()]
        if self.http:
            lines += [
                "  http_listen: 127.0.0.1:%d" % self.http_ports["ingress"],
                "controller:",
                "  http_listen: 127.0.0.1:%d"
                % self.http_ports["controller"],
            ]
        lines += [
            "deliver:",
        ]
        lines += ["  %s: %s" % item for item in self.deliver_settings.items()]
        lines.append("regions:")
        for region in self.regions:
            lines.append("  %s:" % region)
            lines.append("    ses_endpoint: http://127.0.0.1:%d"
                         % self.ses_ports[region])
        lines.append("organizations:")
        for org in ORGANIZATIONS:
            lines += [
                "  - name: %s" % org["name"],
                "    home_region: %s" % org["home_region"],
                "    domains: [%s]" % org["domain"],
                "    networks: [127.0.0.0/8]",
                "    multi_region: %s" % str(org["multi_region"]).lower(),
                "    integration: %s" % org["integration"],
            ]
        with open(self.config_path, "w") as f:
            f.write("\n".join(lines) + "\n" + self.extra_config)
        if not self.http:
            return
        at = lines.index("deliver:") + 1
        for region in PRIMARY_REGIONS:
            listen = ["  http_listen: 127.0.0.1:%d"
                      % self.http_ports["deliver-" + region]]
            with open(self.deliver_config_path(region), "w") as f:
                f.write("\n".join(lines[:at] + listen + lines[at:]) + "\n" +
                        self.extra_config)

    def deliver_config_path(self, region):
        if not self.http:
            return self.config_path
        return os.path.join(self.state_dir, "ferry-deliver-%s.yaml" % region)

    # Processes

    def spawn(self, name, argv, env=None):
        logfile = open(self.log_path(name), "ab")
        proc = subprocess.Popen(argv, stdout=logfile, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=env,
                                cwd=ROOT)
        self.processes[name] = (proc, logfile)
        return proc

    def stop_process(self, name, sig=signal.SIGTERM, timeout=20):
        """Stop one process by its PID; return its exit status."""
        entry = self.processes.pop(name, None)
        if entry is None:
            return None
        proc, logfile = entry
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        logfile.close()
        return proc.returncode

    def tail(self, name, lines=20):
        try:
            with open(self.log_path(name), "rb") as f:
                text = f.read().decode("utf-8", "replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def start_kafka(self):
        self.log("stack: starting Kafka on 127.0.0.1:%d" % self.kafka_port)
        result = subprocess.run(
            [os.path.join(ROOT, "scripts", "kafka-local"), "start"],
            env=self.kafka_env(), cwd=ROOT)
        if result.returncode != 0:
            raise StackError("scripts/kafka-local start failed (exit %d)"
                             % result.returncode)
        self.kafka_started = True

    def kafka_pid(self):
        """Return the PID of the broker that start_kafka() started."""
        with open(os.path.join(self.kafka_dir, "kafka.pid")) as f:
            return int(f.read().strip())

    def stop_kafka(self, keep_data=False):
        if not self.kafka_started:
            return
        argv = [os.path.join(ROOT, "scripts", "kafka-local"), "stop"]
        if keep_data:
            argv.append("--keep-data")
        subprocess.run(argv, env=self.kafka_env(), cwd=ROOT)
        self.kafka_started = keep_data

    def start_ses(self, region):
        port = self.ses_ports[region]
        os.makedirs(self.ses_dir(region), exist_ok=True)
        argv = [sys.executable, os.path.join(ROOT, "scripts", "ses-local"),
                "--region", region, "--port", str(port),
                "--state-dir", self.ses_dir(region),
                "--access-key-id", ACCESS_KEY_ID,
                "--secret-access-key", SECRET_ACCESS_KEY]
        proc = self.spawn("ses-" + region, argv)
        if not wait_for_port(port, 20, proc):
            raise StackError("ses-local for %s did not start:\n%s"
                             % (region, self.tail("ses-" + region)))

    def ses_control(self, region, path, document=None, method="POST"):
        """Call the /_ferry/ control API of a region's ses-local."""
        data = None if document is None else json.dumps(document).encode()
        request = urllib.request.Request(
            "http://127.0.0.1:%d/_ferry/%s" % (self.ses_ports[region], path),
            data=data, method=method,
            headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.load(response)

    def failover_state(self, region):
        """Return region's state as `ferryctl failover status` shows it,
        or None before the controller wrote one."""
        result = subprocess.run(
            [os.path.join(BUILD, "ferryctl"), "failover", "status",
             "--region", region, "-c", self.config_path],
            capture_output=True, text=True, timeout=60)
        for line in result.stdout.splitlines()[2:]:
            cells = line.split()
            if cells and cells[0] == region:
                return cells[1]
        return None

    def start_ingress(self):
        argv = [os.path.join(BUILD, "ferry-ingress"), "-c", self.config_path]
        proc = self.spawn("ingress", argv, env=self.daemon_env())
        if not wait_for_port(self.smtp_port, 30, proc):
            raise StackError("ferry-ingress did not start:\n%s"
                             % self.tail("ingress"))

    def start_deliver(self, region):
        argv = [os.path.join(BUILD, "ferry-deliver"), "-c",
                self.deliver_config_path(region), "--region", region]
        proc = self.spawn("deliver-" + region, argv, env=self.daemon_env())
        time.sleep(0.2)
        if proc.poll() is not None:
            raise StackError("ferry-deliver for %s exited at start:\n%s"
                             % (region, self.tail("deliver-" + region)))

    def start_takeover(self, name="takeover"):
        """Start a takeover worker in the secondary region; it is not part
        of start(). It consumes mail.R only while R is failed over."""
        argv = [os.path.join(BUILD, "ferry-deliver"), "-c", self.config_path,
                "--takeover"]
        proc = self.spawn(name, argv, env=self.daemon_env())
        time.sleep(0.2)
        if proc.poll() is not None:
            raise StackError("ferry-deliver --takeover exited at start:\n%s"
                             % self.tail(name))
        return proc

    def start_controller(self, config_path=None, name="controller"):
        """Start a ferry-controller; it is not part of start()."""
        argv = [os.path.join(BUILD, "ferry-controller"), "-c",
                config_path or self.config_path]
        proc = self.spawn(name, argv, env=self.daemon_env())
        time.sleep(0.2)
        if proc.poll() is not None:
            raise StackError("ferry-controller exited at start:\n%s"
                             % self.tail(name))
        return proc

    def start(self):
        os.makedirs(self.state_dir, exist_ok=True)
        self.write_config()
        self.start_kafka()
        for region in self.regions:
            self.start_ses(region)
        self.log("stack: ses-local on ports %s" % ", ".join(
            "%s=%d" % (r, p) for r, p in self.ses_ports.items()))
        self.start_ingress()
        self.log("stack: ferry-ingress on 127.0.0.1:%d" % self.smtp_port)
        for region in PRIMARY_REGIONS:
            self.start_deliver(region)
        self.log("stack: ferry-deliver workers for %s"
                 % ", ".join(PRIMARY_REGIONS))

    def stop(self):
        """Stop everything, daemons first so they drain, the broker last."""
        for name in ["ingress"] + ["deliver-" + r for r in PRIMARY_REGIONS]:
            self.stop_process(name)
        for name in list(self.processes):
            self.stop_process(name)
        self.stop_kafka()

    def crashed(self):
        """Return the names of daemons that exited on their own."""
        return [name for name, (proc, _) in self.processes.items()
                if proc.poll() is not None]

    def __enter__(self):
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc):
        self.stop()
