"""``vodimg tls``: the local CA used for HTTPS when no certificate is given.

tccli and the Python SDK verify against ``certifi.where()`` only (REQUESTS_CA_BUNDLE has no effect
on them), so ``vodimg tls trust`` appends the CA to a certifi bundle; running it again replaces
the earlier block. The bundle is that of the Python tccli runs on, wherever tccli is installed:
the ``tccli`` on the PATH (or ``--tccli PATH``) is a Python script, its first line names its
interpreter, and that interpreter says where its certifi bundle is. ``--bundle FILE`` edits a
given bundle instead (for example the one of a Python that uses the SDK).
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from vodimg.wire import tls

_WHERE = "import certifi; print(certifi.where())"


class BundleNotFound(Exception):
    """No certifi bundle could be found for the requested tccli."""


def register(subparsers) -> None:
    parser = subparsers.add_parser("tls", help="local CA for HTTPS (trust it for tccli)",
                                   description="The local CA that signs the HTTPS certificate when no --tls-cert is given.")
    commands = parser.add_subparsers(dest="tls_command", required=True, metavar="TLS_COMMAND")
    trust = commands.add_parser("trust", help="make the local CA (if needed) and add it to the certifi bundle "
                                              "of tccli's Python (idempotent)",
                                description="Make the local CA (if needed) and add it to the certifi bundle of "
                                            "the Python that tccli runs on; safe to repeat.")
    _data_dir_option(trust)
    _bundle_options(trust)
    trust.set_defaults(handler=_trust)
    untrust = commands.add_parser("untrust", help="remove the vodimg CA from the certifi bundle of tccli's Python")
    _bundle_options(untrust)
    untrust.set_defaults(handler=_untrust)
    ca_path = commands.add_parser("ca-path", help="make the local CA (if needed) and print its PEM file's path")
    _data_dir_option(ca_path)
    ca_path.set_defaults(handler=_ca_path)


def _data_dir_option(parser) -> None:
    parser.add_argument("--data-dir", type=Path, help="data directory of the server (VODIMG_DATA_DIR, default ./data)")


def _bundle_options(parser) -> None:
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--tccli", type=Path, metavar="PATH",
                       help="the tccli whose Python's certifi bundle to edit (default: tccli on the PATH)")
    where.add_argument("--bundle", type=Path, metavar="FILE", help="edit this CA bundle instead")


def _data_dir(args) -> Path:
    return args.data_dir or Path(os.environ.get("VODIMG_DATA_DIR") or "data")


def _bundle(args) -> tuple[Path, str]:
    """The bundle to edit and a description of whose it is."""
    if args.bundle is not None:
        return args.bundle, "the bundle given with --bundle"
    tccli = args.tccli if args.tccli is not None else _tccli_on_path()
    python = script_interpreter(tccli)
    return certifi_bundle(python), f"the certifi bundle of {python}, the Python of {tccli}"


def _tccli_on_path() -> Path:
    found = shutil.which("tccli")
    if found is None:
        raise BundleNotFound("no tccli on the PATH; install it (for example `pipx install tccli` or "
                             "`python3 -m pip install --user tccli`), or give --tccli PATH or --bundle FILE")
    return Path(found)


def script_interpreter(script: Path) -> Path:
    """The Python that runs the console script ``script``: its ``#!`` line, or the
    ``'''exec' PYTHON`` line pip writes under ``#!/bin/sh`` when the interpreter's path is long."""
    try:
        with open(script, "rb") as handle:
            lines = handle.read(4096).decode("utf-8", "replace").splitlines()[:2]
    except OSError as error:
        raise BundleNotFound(f"cannot read {script}: {error.strerror}") from None
    if not lines or not lines[0].startswith("#!"):
        raise BundleNotFound(f"{script} is not a Python script (no #! line); give --bundle FILE")
    words = shlex.split(lines[0][2:])
    if words and words[0] == "/bin/sh" and len(lines) > 1 and lines[1].startswith("'''exec' "):
        words = shlex.split(lines[1][len("'''exec' "):])
    if words and Path(words[0]).name == "env" and len(words) > 1:
        words = [shutil.which(words[1]) or words[1]]
    if not words:
        raise BundleNotFound(f"{script} names no interpreter on its #! line; give --bundle FILE")
    return Path(words[0])


def certifi_bundle(python: Path) -> Path:
    """Where ``certifi.where()`` points for the interpreter ``python``."""
    try:
        result = subprocess.run([str(python), "-c", _WHERE], capture_output=True, text=True, timeout=60)
    except OSError as error:
        raise BundleNotFound(f"cannot run {python}: {error.strerror}") from None
    if result.returncode != 0 or not result.stdout.strip():
        raise BundleNotFound(f"{python} cannot import certifi ({result.stderr.strip().splitlines()[-1:]}); "
                             "give --bundle FILE")
    return Path(result.stdout.strip())


def _trust(args) -> int:
    try:
        bundle, whose = _bundle(args)
        ca = tls.ensure_local_tls(_data_dir(args)).ca_cert.resolve()
        changed = tls.trust_ca(ca, bundle)
    except (BundleNotFound, OSError, ValueError) as error:
        print(f"vodimg tls trust: {error}", file=sys.stderr)
        return 1
    state = "added to" if changed else "already in"
    print(f"vodimg: CA {ca} {state} {bundle} ({whose})")
    return 0


def _untrust(args) -> int:
    try:
        bundle, whose = _bundle(args)
        changed = tls.untrust_ca(bundle)
    except (BundleNotFound, OSError, ValueError) as error:
        print(f"vodimg tls untrust: {error}", file=sys.stderr)
        return 1
    print(f"vodimg: CA {'removed from' if changed else 'was not in'} {bundle} ({whose})")
    return 0


def _ca_path(args) -> int:
    print(tls.ensure_local_tls(_data_dir(args)).ca_cert.resolve())
    return 0
