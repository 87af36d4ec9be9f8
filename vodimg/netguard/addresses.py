"""Which IP addresses a user's URL may reach, and the allow list that overrides the refusals.

Pure functions of an address: no sockets, no DNS. The refused ranges follow the IANA special-purpose
registries (RFC 6890 and successors); an IPv6 address that carries an IPv4 address (IPv4-mapped,
IPv4-compatible, NAT64, 6to4) is judged by the IPv4 address it reaches.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Iterable, Union

Address = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]
Network = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]

ALLOW_VARIABLE = "VODIMG_URL_ALLOW"

_V4 = ipaddress.IPv4Network
_V6 = ipaddress.IPv6Network

# First match wins, so a specific range comes before the range that contains it.
_REFUSED_V4: tuple[tuple[Network, str], ...] = (
    (_V4("169.254.169.254/32"), "the cloud metadata service"),
    (_V4("0.0.0.0/8"), "unspecified (this network)"),
    (_V4("10.0.0.0/8"), "private"),
    (_V4("100.64.0.0/10"), "carrier-grade NAT (shared address space)"),
    (_V4("127.0.0.0/8"), "loopback"),
    (_V4("169.254.0.0/16"), "link-local"),
    (_V4("172.16.0.0/12"), "private"),
    (_V4("192.0.0.0/24"), "reserved (IETF protocol assignments)"),
    (_V4("192.0.2.0/24"), "documentation (TEST-NET-1)"),
    (_V4("192.88.99.0/24"), "reserved (6to4 relay anycast)"),
    (_V4("192.168.0.0/16"), "private"),
    (_V4("198.18.0.0/15"), "benchmarking"),
    (_V4("198.51.100.0/24"), "documentation (TEST-NET-2)"),
    (_V4("203.0.113.0/24"), "documentation (TEST-NET-3)"),
    (_V4("224.0.0.0/4"), "multicast"),
    (_V4("255.255.255.255/32"), "broadcast"),
    (_V4("240.0.0.0/4"), "reserved"),
)

_REFUSED_V6: tuple[tuple[Network, str], ...] = (
    (_V6("::/128"), "unspecified"),
    (_V6("::1/128"), "loopback"),
    (_V6("fd00:ec2::254/128"), "the cloud metadata service"),
    (_V6("fc00::/7"), "private (unique local)"),
    (_V6("fe80::/10"), "link-local"),
    (_V6("fec0::/10"), "private (site-local)"),
    (_V6("ff00::/8"), "multicast"),
    (_V6("100::/64"), "reserved (discard-only)"),
    (_V6("64:ff9b:1::/48"), "private (local-use NAT64)"),
    (_V6("2001::/32"), "a Teredo tunnel"),
    (_V6("2001:2::/48"), "benchmarking"),
    (_V6("2001:10::/28"), "reserved (ORCHID)"),
    (_V6("2001:20::/28"), "reserved (ORCHIDv2)"),
    (_V6("2001:db8::/32"), "documentation"),
    (_V6("3fff::/20"), "documentation"),
)
_GLOBAL_UNICAST_V6 = _V6("2000::/3")

# IPv6 forms that reach an IPv4 address: the prefix, its name, and how to take the IPv4 address out.
_NAT64 = _V6("64:ff9b::/96")
_IPV4_COMPATIBLE = _V6("::/96")


def embedded_ipv4(address: Address) -> tuple[ipaddress.IPv4Address, str] | None:
    """The IPv4 address an IPv6 address reaches, and the name of the form, or None."""
    if address.version != 6:
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped, "IPv4-mapped"
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF), "NAT64"
    if address.sixtofour is not None:
        return address.sixtofour, "6to4"
    if address in _IPV4_COMPATIBLE and int(address) > 1:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF), "IPv4-compatible"
    return None


def refused_class(address: Address) -> tuple[str, Network] | None:
    """Why the address is refused (its class) and the network to allow it with, or None if public."""
    embedded = embedded_ipv4(address)
    if embedded is not None:
        ipv4, form = embedded
        inner = refused_class(ipv4)
        if inner is None:
            return None
        return f"the {form} form of {ipv4}, which is {inner[0]}", inner[1]
    table = _REFUSED_V4 if address.version == 4 else _REFUSED_V6
    for network, name in table:
        if address in network:
            return name, network
    if address.version == 6 and address not in _GLOBAL_UNICAST_V6:
        return "reserved (outside global unicast 2000::/3)", ipaddress.ip_network(address)
    return None


def is_allowed(address: Address, allow: Iterable[Network]) -> bool:
    """True if the operator's allow list names the address or the IPv4 address it carries."""
    embedded = embedded_ipv4(address)
    candidates = [address] if embedded is None else [address, embedded[0]]
    return any(candidate in network for network in allow for candidate in candidates
               if candidate.version == network.version)


def refusal(address: Address, allow: Iterable[Network]) -> str | None:
    """None if the address may be reached; else "is <class>; refused (allow it with ...)"."""
    found = refused_class(address)
    if found is None or is_allowed(address, allow):
        return None
    name, network = found
    shown = network.network_address if network.num_addresses == 1 else network
    return f"is {name}; refused (allow it with {ALLOW_VARIABLE}={shown})"


def parse_address(text: str) -> Address:
    """An IP address from a socket address string (an IPv6 zone such as ``%eth0`` is dropped)."""
    return ipaddress.ip_address(text.split("%", 1)[0])


def parse_allow(value: str, variable: str = ALLOW_VARIABLE) -> tuple[Network, ...]:
    """Networks (or single addresses) separated by commas or spaces; ValueError names the variable."""
    networks = []
    for item in re.split(r"[\s,]+", value.strip()):
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item))
        except ValueError as exc:
            raise ValueError(f"{variable}: {item!r} is not an IP network or address ({exc}); "
                             f"expected for example {variable}=127.0.0.0/8,::1") from None
    return tuple(networks)
