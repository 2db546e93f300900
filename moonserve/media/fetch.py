"""Fetching media URLs for users without becoming a way into the operator's network.

- only http and https;
- the host name is resolved here, every address it resolves to is checked (`addresses.py`), and
  the connection goes to the address that was checked (the URL's host is replaced by that IP,
  with the Host header and TLS server name kept), so DNS rebinding cannot swap it afterwards;
- redirects are followed by hand, each hop checked the same way;
- the body is streamed and reading stops at the byte budget;
- connect, read and total timeouts.

Hosts the operator allows by name (`[media] allow_hosts`) skip the address check: that is how a
local media server is reached on purpose (and how the tests reach theirs).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit, urlunsplit

import httpx

from .addresses import why_forbidden

REDIRECTS = {301, 302, 303, 307, 308}


class FetchRefused(Exception):
    """The URL may not be fetched, or fetching it failed; the message says why."""


class FetchTooLarge(Exception):
    pass


@dataclass
class FetchPolicy:
    allow_hosts: frozenset[str] = field(default_factory=frozenset)
    connect_timeout: float = 5.0
    read_timeout: float = 15.0
    total_timeout: float = 60.0
    max_redirects: int = 5


class Fetcher:
    def __init__(self, policy: FetchPolicy, client: httpx.AsyncClient | None = None):
        self.policy = policy
        self._client = client or httpx.AsyncClient(
            timeout=httpx.Timeout(policy.read_timeout, connect=policy.connect_timeout),
            follow_redirects=False,
            trust_env=False,  # never through a proxy from the environment: we pin the address
        )

    async def close(self) -> None:
        await self._client.aclose()

    async def fetch(self, url: str, max_bytes: int) -> bytes:
        """The body at url, at most max_bytes (FetchTooLarge beyond)."""
        try:
            return await asyncio.wait_for(self._fetch(url, max_bytes), self.policy.total_timeout)
        except asyncio.TimeoutError:
            raise FetchRefused(f"timed out after {self.policy.total_timeout:g}s") from None

    async def _fetch(self, url: str, max_bytes: int) -> bytes:
        for _ in range(self.policy.max_redirects + 1):
            target, host, sni = await self._pin(url)
            headers = {"Host": host, "User-Agent": "Moonserve-media-fetcher", "Accept": "*/*"}
            extensions = {"sni_hostname": sni} if sni else {}
            try:
                req = self._client.build_request("GET", target, headers=headers, extensions=extensions)
                resp = await self._client.send(req, stream=True)
            # InvalidURL is no HTTPError: httpx raises it for a bad URL, or a redirect's Location
            # that is no http(s) URL (e.g. `data:`), which it parses even with redirects off.
            except (httpx.HTTPError, httpx.InvalidURL) as exc:
                raise FetchRefused(f"could not be fetched: {type(exc).__name__}: {exc}") from None
            try:
                if resp.status_code in REDIRECTS:
                    location = resp.headers.get("location")
                    if not location:
                        raise FetchRefused(f"redirect {resp.status_code} without a Location")
                    url = urljoin(url, location)
                    continue
                if resp.status_code != 200:
                    raise FetchRefused(f"answered HTTP {resp.status_code}")
                declared = resp.headers.get("content-length")
                if declared and declared.isdigit() and int(declared) > max_bytes:
                    raise FetchTooLarge(f"is {int(declared)} bytes")
                body = bytearray()
                try:
                    async for chunk in resp.aiter_bytes():
                        body += chunk
                        if len(body) > max_bytes:
                            raise FetchTooLarge(f"is over {max_bytes} bytes")  # stop reading here
                except httpx.HTTPError as exc:
                    raise FetchRefused(f"could not be read: {type(exc).__name__}") from None
                return bytes(body)
            finally:
                await resp.aclose()
        raise FetchRefused(f"more than {self.policy.max_redirects} redirects")

    async def _pin(self, url: str) -> tuple[str, str, str | None]:
        """(URL to request with the checked IP as host, Host header, TLS server name)."""
        try:
            parts = urlsplit(url)
            port = parts.port  # raises for a port that is no number or out of range
        except ValueError as exc:
            raise FetchRefused(f"not a valid URL: {exc}") from None
        if parts.scheme not in ("http", "https"):
            raise FetchRefused("only http and https URLs can be fetched")
        host = parts.hostname
        if not host:
            raise FetchRefused("the URL has no host")
        port = port or (443 if parts.scheme == "https" else 80)
        host_header = parts.netloc.rsplit("@", 1)[-1]
        if host.lower() in self.policy.allow_hosts:
            return url, host_header, None
        address = await self._resolve_checked(host, port)
        literal = f"[{address}]" if ":" in address else address
        netloc = f"{literal}:{port}" if parts.port else literal
        is_name = not _is_ip(host)
        sni = host if parts.scheme == "https" and is_name else None
        return urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, "")), host_header, sni

    async def _resolve_checked(self, host: str, port: int) -> str:
        if _is_ip(host):
            addresses = [host]
        else:
            try:
                infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
            except socket.gaierror:
                raise FetchRefused(f"host {host!r} could not be resolved") from None
            addresses = list(dict.fromkeys(info[4][0] for info in infos))
        for address in addresses:  # one forbidden address is enough to refuse the host
            reason = why_forbidden(address)
            if reason:
                raise FetchRefused(f"{host} is {reason}" if address == host else f"{host} resolves to {reason}")
        return addresses[0]


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
        return True
    except ValueError:
        return False
