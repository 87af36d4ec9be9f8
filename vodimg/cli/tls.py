"""``vodimg tls``: the local CA used for HTTPS when no certificate is given.

``vodimg tls trust`` appends the CA to the certifi bundle of the Python running it (tccli and the
Python SDK verify against ``certifi.where()`` only); running it again replaces the earlier block.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from vodimg.wire import tls


def register(subparsers) -> None:
    parser = subparsers.add_parser("tls", help="local CA for HTTPS (trust it for tccli)",
                                   description="The local CA that signs the HTTPS certificate when no --tls-cert is given.")
    commands = parser.add_subparsers(dest="tls_command", required=True, metavar="TLS_COMMAND")
    trust = commands.add_parser("trust", help="make the local CA (if needed) and add it to this "
                                              "Python's certifi bundle (idempotent)")
    _data_dir_option(trust)
    _bundle_option(trust)
    trust.set_defaults(handler=_trust)
    untrust = commands.add_parser("untrust", help="remove the vodimg CA from this Python's certifi bundle")
    _bundle_option(untrust)
    untrust.set_defaults(handler=_untrust)
    ca_path = commands.add_parser("ca-path", help="make the local CA (if needed) and print its PEM file's path")
    _data_dir_option(ca_path)
    ca_path.set_defaults(handler=_ca_path)


def _data_dir_option(parser) -> None:
    parser.add_argument("--data-dir", type=Path, help="data directory of the server (VODIMG_DATA_DIR, default ./data)")


def _bundle_option(parser) -> None:
    parser.add_argument("--bundle", type=Path, help="CA bundle to edit (default: certifi.where())")


def _data_dir(args) -> Path:
    return args.data_dir or Path(os.environ.get("VODIMG_DATA_DIR") or "data")


def _bundle(args) -> Path:
    if args.bundle is not None:
        return args.bundle
    import certifi

    return Path(certifi.where())


def _trust(args) -> int:
    files = tls.ensure_local_tls(_data_dir(args))
    bundle = _bundle(args)
    try:
        changed = tls.trust_ca(files.ca_cert.resolve(), bundle)
    except (OSError, ValueError) as error:
        print(f"vodimg tls trust: {error}", file=sys.stderr)
        return 1
    state = "added to" if changed else "already in"
    print(f"vodimg: CA {files.ca_cert.resolve()} {state} {bundle}")
    return 0


def _untrust(args) -> int:
    bundle = _bundle(args)
    try:
        changed = tls.untrust_ca(bundle)
    except (OSError, ValueError) as error:
        print(f"vodimg tls untrust: {error}", file=sys.stderr)
        return 1
    print(f"vodimg: CA {'removed from' if changed else 'was not in'} {bundle}")
    return 0


def _ca_path(args) -> int:
    print(tls.ensure_local_tls(_data_dir(args)).ca_cert.resolve())
    return 0
