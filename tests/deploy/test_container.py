"""Checks of deploy/container/Containerfile without a container runtime.

The runtime stage must install the Debian package of every shared library
the built programs link, and the build stage's package list in
scripts/install-deps must keep up with the development packages the
tests' list names. The image itself is not built here.
"""

import os
import re
import subprocess

import chart

CONTAINERFILE = os.path.join(chart.ROOT, "deploy", "container",
                             "Containerfile")
INSTALL_DEPS = os.path.join(chart.ROOT, "scripts", "install-deps")
PROGRAMS = ("ferry-ingress", "ferry-deliver", "ferry-controller", "ferryctl")

# Packages of the base image that every Debian system has.
BASE_PACKAGES = {"libc6"}

# Development packages the tests need and the build does not.
TEST_ONLY_DEV_PACKAGES = {"libcmocka-dev", "libclang-rt-14-dev"}


def runtime_packages():
    """Return the packages the last stage's apt-get install names."""
    with open(CONTAINERFILE) as f:
        text = f.read()
    last_stage = text[text.rindex("\nFROM "):]
    command = re.search(r"apt-get install (.*?)&&", last_stage, re.S)
    assert command, "no apt-get install in the runtime stage"
    words = command.group(1).replace("\\\n", " ").split()
    return {w for w in words if not w.startswith("-")}


def needed_libraries():
    """Return the sonames the built programs link (DT_NEEDED)."""
    sonames = set()
    for program in PROGRAMS:
        result = subprocess.run(
            ["readelf", "-d", os.path.join(chart.ROOT, "build", program)],
            capture_output=True, text=True, check=True)
        sonames |= set(re.findall(r"\(NEEDED\).*\[(.+)\]", result.stdout))
    return sonames


def package_of(soname):
    """Return the Debian package that installed soname on this machine."""
    result = subprocess.run(["dpkg", "-S", "*/" + soname],
                            capture_output=True, text=True)
    assert result.returncode == 0, "no package contains %s" % soname
    for line in result.stdout.splitlines():
        package, _, path = line.partition(": ")
        if "x86_64-linux-gnu" in path or "aarch64-linux-gnu" in path:
            return package.split(":")[0]
    return result.stdout.split(":")[0]


def shell_list(name):
    """Return the words of a NAME="..." list in scripts/install-deps."""
    with open(INSTALL_DEPS) as f:
        text = f.read()
    match = re.search(r'^%s="([^"]*)"' % name, text, re.M | re.S)
    assert match, "%s not found in scripts/install-deps" % name
    return set(match.group(1).split())


def test_runtime_stage_has_every_library():
    packages = runtime_packages()
    sonames = needed_libraries()
    assert "libssl.so.3" in sonames
    missing = {soname: package_of(soname) for soname in sonames
               if package_of(soname) not in packages | BASE_PACKAGES}
    assert missing == {}


def test_build_stage_uses_install_deps():
    with open(CONTAINERFILE) as f:
        text = f.read()
    build_stage = text[:text.rindex("\nFROM ")]
    assert "scripts/install-deps --build-only" in build_stage
    assert "make " in build_stage


def test_build_packages_cover_dev_packages():
    build = shell_list("BUILD_APT_PACKAGES")
    every = shell_list("APT_PACKAGES")
    assert build <= every
    dev = {p for p in every if p.endswith("-dev")} - TEST_ONLY_DEV_PACKAGES
    assert dev - build == set()
