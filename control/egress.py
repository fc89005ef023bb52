"""Where control may send requests (webhooks): a target is resolved, and refused when any address it resolves
to is not public (loopback, private, link-local and cloud metadata, CGNAT, multicast, unspecified...) unless
the operator lists its host or network in `BIPLANE_WEBHOOK_ALLOW`.

Checked at submission and again at every delivery attempt, and the delivery connects to the very address
that was checked (the name is sent as Host and TLS SNI), so a name cannot answer differently in between.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass

import httpx

from common.settings import Settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

#: How long one resolution may take before the target counts as unresolvable.
RESOLVE_SECONDS = 5.0


class TargetRefused(Exception):
    """A webhook target that control will not call: malformed, unresolvable or not public."""


@dataclass(frozen=True)
class Target:
    url: httpx.URL  #: the URL with its host replaced by the checked address
    host: str  #: the name to send as Host and TLS SNI
    headers: dict[str, str]
    extensions: dict[str, str]


@dataclass(frozen=True)
class EgressPolicy:
    hosts: frozenset[str]
    networks: tuple[Network, ...]

    @classmethod
    def from_settings(cls, settings: Settings) -> EgressPolicy:
        hosts, networks = set(), []
        for item in settings.webhook_allow_list():
            try:
                networks.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                hosts.add(item.lower())
        return cls(frozenset(hosts), tuple(networks))

    def allows(self, host: str, ip: IPAddress) -> bool:
        if host.lower() in self.hosts or any(ip in n for n in self.networks if n.version == ip.version):
            return True
        return public(ip)

    async def resolve(self, url: str) -> Target:
        """The target to connect to for url; TargetRefused when it must not be called."""
        try:
            parsed = httpx.URL(url)
        except httpx.InvalidURL as e:
            raise TargetRefused(f"not a URL: {e}") from e
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise TargetRefused("webhook must be an http(s) URL with a host")
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        try:
            infos = await asyncio.wait_for(
                asyncio.get_running_loop().getaddrinfo(parsed.host, port, type=socket.SOCK_STREAM), RESOLVE_SECONDS
            )
        except (OSError, TimeoutError, UnicodeError) as e:
            raise TargetRefused(f"webhook host {parsed.host} does not resolve") from e
        addresses = list(dict.fromkeys(ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos))
        if not addresses:
            raise TargetRefused(f"webhook host {parsed.host} does not resolve")
        for ip in addresses:
            if not self.allows(parsed.host, ip):
                raise TargetRefused(f"webhook host {parsed.host} resolves to a non-public address ({ip})")
        netloc = parsed.netloc.decode("ascii")
        extensions = {"sni_hostname": parsed.host} if parsed.scheme == "https" else {}
        return Target(parsed.copy_with(host=str(addresses[0])), parsed.host, {"host": netloc}, extensions)


def public(ip: IPAddress) -> bool:
    """Globally routable unicast (an IPv4-mapped IPv6 address is judged by its IPv4 address)."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast
