"""Which network addresses a media fetch may never reach.

Loopback, private (RFC 1918, unique-local), link-local (and so cloud metadata at 169.254.169.254),
carrier-grade NAT (100.64.0.0/10), multicast, reserved, unspecified and documentation ranges, for
IPv4 and IPv6; IPv6 forms that embed an IPv4 address (IPv4-mapped, IPv4-compatible, 6to4, NAT64,
Teredo) are judged by the IPv4 address inside.
"""

from __future__ import annotations

import ipaddress

CGNAT = ipaddress.ip_network("100.64.0.0/10")
METADATA = {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}
NAT64 = ipaddress.ip_network("64:ff9b::/96")


def embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip.ipv4_mapped:
        return ip.ipv4_mapped
    if ip.sixtofour:
        return ip.sixtofour
    if ip.teredo:
        return ip.teredo[1]
    if ip in NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if int(ip) >> 32 == 0 and int(ip) > 1:  # IPv4-compatible ::a.b.c.d (deprecated, still routable)
        return ipaddress.IPv4Address(int(ip))
    return None


def why_forbidden(address: str) -> str | None:
    """A reason this address may not be fetched from, or None when it is a public address."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return "not an IP address"
    if isinstance(ip, ipaddress.IPv6Address):
        inner = embedded_ipv4(ip)
        if inner is not None:
            reason = why_forbidden(str(inner))
            return f"{reason} (inside {ip})" if reason else None
    if ip in METADATA:
        return "a cloud metadata address"
    if ip.is_unspecified:
        return "the unspecified address"
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_link_local:
        return "a link-local address"
    if isinstance(ip, ipaddress.IPv4Address) and ip in CGNAT:
        return "a carrier-grade NAT address"
    if ip.is_multicast:
        return "a multicast address"
    if ip.is_reserved:
        return "a reserved address"
    if ip.is_private:
        return "a private address"
    if not ip.is_global:
        return "a reserved address"
    return None
