"""Tests of `make install` and the systemd units it writes."""

import os
import subprocess

import pytest

import chart

BINARIES = ("ferry-ingress", "ferry-deliver", "ferry-controller", "ferryctl")
UNITS = ("ferry-ingress.service", "ferry-deliver@.service",
         "ferry-controller.service")


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """A tree from `make install DESTDIR=... PREFIX=/usr`."""
    destdir = tmp_path_factory.mktemp("destdir")
    result = subprocess.run(
        ["make", "--no-print-directory", "-C", chart.ROOT, "install",
         "DESTDIR=%s" % destdir, "PREFIX=/usr"],
        capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    return destdir


def read_unit(path):
    """Parse a unit file into {section: {key: [values]}}, because a key
    such as ExecReload may repeat."""
    values = {}
    section = None
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if line.startswith("["):
                section = line.strip("[]")
                values[section] = {}
                continue
            key, _, value = line.partition("=")
            values[section].setdefault(key, []).append(value)
    return values


def test_binaries_installed(installed):
    for name in BINARIES:
        path = installed / "usr" / "bin" / name
        assert path.is_file(), path
        assert os.access(path, os.X_OK), path


def test_example_config_installed(installed):
    path = installed / "etc" / "ferry" / "ferry.example.yaml"
    assert path.is_file()
    with open(os.path.join(chart.ROOT, "deploy", "config",
                           "ferry.example.yaml")) as f:
        assert path.read_text() == f.read()


def test_installed_example_passes_check(installed):
    config = installed / "etc" / "ferry" / "ferry.example.yaml"
    for name in ("ferry-ingress", "ferry-controller"):
        result = subprocess.run(
            [str(installed / "usr" / "bin" / name), "-c", str(config),
             "--check-config"], capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("unit", UNITS)
def test_unit_is_notify_with_config_check(installed, unit):
    path = installed / "usr" / "lib" / "systemd" / "system" / unit
    assert path.is_file()
    text = path.read_text()
    assert "@" not in text.replace("ferry-deliver@", "").replace(
        "%i", ""), "placeholder left in %s" % unit
    service = read_unit(path)["Service"]
    assert service["Type"] == ["notify"]
    assert service["RestartPreventExitStatus"] == ["64 78"]
    [start] = service["ExecStart"]
    [pre] = service["ExecStartPre"]
    binary = start.split()[0]
    assert binary.startswith("/usr/bin/ferry-")
    assert (installed / binary.lstrip("/")).is_file()
    assert "-c /etc/ferry/ferry.yaml" in start
    assert pre == start + " --check-config"


def test_ingress_reload_checks_then_signals(installed):
    path = installed / "usr" / "lib" / "systemd" / "system" / UNITS[0]
    service = read_unit(path)["Service"]
    assert service["ExecReload"] == [
        "/usr/bin/ferry-ingress -c /etc/ferry/ferry.yaml --check-config",
        "/bin/kill -HUP $MAINPID",
    ]


def test_deliver_unit_takes_region_instance(installed):
    path = installed / "usr" / "lib" / "systemd" / "system" / UNITS[1]
    [start] = read_unit(path)["Service"]["ExecStart"]
    assert start.endswith("--region %i")


def test_units_pass_systemd_analyze(tmp_path):
    """systemd-analyze verify finds no error in the units. They are
    installed with PREFIX and no DESTDIR, so the programs their Exec
    lines name exist where verify looks for them."""
    prefix = tmp_path / "prefix"
    result = subprocess.run(
        ["make", "--no-print-directory", "-C", chart.ROOT, "install",
         "PREFIX=%s" % prefix], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    unit_dir = prefix / "lib" / "systemd" / "system"
    (unit_dir / "ferry-deliver@us-east-1.service").symlink_to(
        "ferry-deliver@.service")
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", "ferry-ingress.service",
         "ferry-controller.service", "ferry-deliver@us-east-1.service"],
        cwd=unit_dir, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout + result.stderr == ""


def test_bad_config_exits_78(installed, tmp_path):
    """Exit status 78 is what RestartPreventExitStatus stops on."""
    config = tmp_path / "ferry.yaml"
    config.write_text("kafka:\n  bootstrap_servers: 127.0.0.1:1\n"
                      "regions:\n  us-east-1: {}\nunknown_key: 1\n")
    commands = {
        "ferry-ingress": [],
        "ferry-deliver": ["--region", "us-east-1"],
        "ferry-controller": [],
    }
    for name, extra_args in commands.items():
        result = subprocess.run(
            [str(installed / "usr" / "bin" / name), "-c", str(config)] +
            extra_args, capture_output=True, text=True, timeout=30)
        assert result.returncode == 78, (name, result.stderr)
        assert "unknown_key" in result.stderr, name
