"""The operator's URL policy and the two ways a guarded request can fail."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Mapping

from .addresses import ALLOW_VARIABLE, Network, parse_allow


TIMEOUT_VARIABLE = "VODIMG_URL_TIMEOUT_SECONDS"


class UrlRefused(Exception):
    """The URL may not be fetched (scheme, user info, or an address the policy refuses); the
    message says why and how an operator can allow it."""


class FetchFailed(Exception):
    """The URL was allowed but could not be fetched (DNS, connection, timeout, HTTP status,
    redirects, size); the message says which, in one line."""


@dataclass(frozen=True)
class UrlPolicy:
    """What guarded requests may reach and how long they may take."""

    allow: tuple[Network, ...] = ()     # networks reachable although private, loopback, ...
    connect_timeout: float = 5.0        # seconds, for DNS and for each TCP connect and TLS handshake
    total_timeout: float = 30.0         # seconds, for a whole fetch, redirects included
    max_redirects: int = 5

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "UrlPolicy":
        """The policy from ``VODIMG_URL_ALLOW`` (networks or addresses separated by commas or
        spaces, e.g. ``127.0.0.0/8,::1``) and ``VODIMG_URL_TIMEOUT_SECONDS`` (the whole fetch,
        default 30); a bad value raises ValueError naming the variable."""
        env = os.environ if environ is None else environ
        total = env.get(TIMEOUT_VARIABLE, "").strip()
        try:
            total_timeout = float(total) if total else cls.total_timeout
        except ValueError:
            total_timeout = -1.0
        if not total_timeout > 0:
            raise ValueError(f"{TIMEOUT_VARIABLE} must be a positive number of seconds, got {total!r}")
        return cls(allow=parse_allow(env.get(ALLOW_VARIABLE, "")), total_timeout=total_timeout,
                   connect_timeout=min(cls.connect_timeout, total_timeout))
