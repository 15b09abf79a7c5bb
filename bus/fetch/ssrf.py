"""Server-side request forgery guard for URL fetches: which URLs and addresses may be fetched.

Two layers, both needed. `check_url` is pure: http(s) only, a host, no userinfo, at most
8 KiB, and a host written as an IP literal (in any spelling `inet_aton` accepts: decimal
`2130706433`, octal `0177.1`, hex `0x7f.1`) must be a public address. `GuardedBackend` is
the httpcore network backend every fetch connects through: it resolves the name itself,
refuses non-public addresses and connects to the very address it checked, so a name
that resolves to a public address when checked and to 127.0.0.1 when connected (DNS
rebinding) never reaches the private one. Redirects are followed by the worker one hop at
a time, each hop through `check_url` and this backend again.

`CAIRN_FETCH_ALLOW_PRIVATE=true` lifts the address rule altogether; narrower,
`CAIRN_FETCH_ALLOW_NETWORKS` lists networks (CIDR) that may be reached although not public
(an internal mirror; in tests, one loopback address such as 127.0.0.2 while the rest of
127.0.0.0/8 stays refused).
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpcore
import httpx
from httpcore._backends.auto import AutoBackend

MAX_URL = 8192
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
# host, port -> the addresses it resolves to (tests pass their own to show pinning)
Resolver = Callable[[str, int], Awaitable[list[str]]]

# Beyond "not global": ranges Python calls global that no fetch should reach.
_EXTRA_BLOCKED = [
    ipaddress.ip_network(n)
    for n in (
        "100.64.0.0/10",  # carrier-grade NAT; 100.100.100.200 is Alibaba's metadata service
        "192.0.0.0/24",  # IETF protocol assignments
        "198.18.0.0/15",  # benchmarking
        "fec0::/10",  # deprecated site-local
        "fd00:ec2::/32",  # AWS metadata over IPv6 (unique-local anyway)
    )
]
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))


class UnsafeUrl(ValueError):
    """The URL or an address it resolves to may not be fetched. `code` is stable."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _embedded_v4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries: mapped, 6to4, NAT64, Teredo, compatible."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    if any(ip in n for n in _NAT64):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if int(ip) >> 32 == 0 and int(ip) > 1:  # deprecated IPv4-compatible ::a.b.c.d
        return ipaddress.IPv4Address(int(ip))
    return None


def address_problem(ip: Address) -> str | None:
    """Why `ip` may not be fetched from (None: it may)."""
    if isinstance(ip, ipaddress.IPv6Address):
        inner = _embedded_v4(ip)
        if inner is not None:
            problem = address_problem(inner)
            return f"{problem} (embedded in {ip})" if problem else None
    for attr, what in (
        ("is_unspecified", "unspecified"),
        ("is_loopback", "loopback"),
        ("is_link_local", "link-local"),
        ("is_multicast", "multicast"),
        ("is_private", "private"),
        ("is_reserved", "reserved"),
    ):
        if getattr(ip, attr):
            return f"{what} address {ip}"
    if any(ip in n for n in _EXTRA_BLOCKED if n.version == ip.version) or not ip.is_global:
        return f"non-public address {ip}"
    return None


def parse_networks(items: Iterable[str]) -> tuple[Network, ...]:
    """CIDR strings (`10.1.2.0/24`, `127.0.0.2`, `fd00::/8`) -> networks; ValueError if bad."""
    return tuple(ipaddress.ip_network(i.strip(), strict=False) for i in items if i.strip())


def _allowed(ip: Address, networks: Sequence[Network]) -> bool:
    return any(ip.version == n.version and ip in n for n in networks)


def parse_ip_literal(host: str) -> Address | None:
    """`host` as an IP address if it is one in any spelling a resolver accepts, else None.

    IPv4 follows inet_aton: 1 to 4 parts, each decimal, octal (leading 0) or hex (0x), the
    last part filling the remaining bytes (`127.1`, `2130706433`, `0x7f000001`)."""
    h = host.strip("[]")
    try:
        return ipaddress.ip_address(h.split("%", 1)[0])
    except ValueError:
        pass
    parts = h.split(".")
    if not 1 <= len(parts) <= 4:
        return None
    values = []
    for p in parts:
        try:
            if p.lower().startswith("0x"):
                values.append(int(p[2:] or "0", 16))
            elif len(p) > 1 and p.startswith("0"):
                values.append(int(p, 8))
            else:
                if not p.isdigit():
                    return None
                values.append(int(p, 10))
        except ValueError:
            return None
    *head, last = values
    if any(v > 255 for v in head) or last >= 256 ** (4 - len(head)):
        return None
    n = 0
    for v in head:
        n = n * 256 + v
    n = n * 256 ** (4 - len(head)) + last
    return ipaddress.IPv4Address(n)


def check_url(
    url: object, *, allow_private: bool = False, allow_networks: Sequence[Network] = ()
) -> str:
    """The normalised URL (lower-case scheme and host, no default port, no fragment), or
    UnsafeUrl. The message never repeats the URL (it may carry credentials)."""
    if not isinstance(url, str) or not url:
        raise UnsafeUrl("invalid_url", "url must be a non-empty string")
    if len(url) > MAX_URL:
        raise UnsafeUrl("invalid_url", f"url is longer than {MAX_URL} characters")
    if any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in url):
        raise UnsafeUrl("invalid_url", "url must not contain whitespace or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise UnsafeUrl("invalid_url", "url is not a valid URL") from None
    if port == 0:  # nothing listens there: refused now, not after every retry's connect
        raise UnsafeUrl("invalid_url", "url's port must be 1 to 65535")
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise UnsafeUrl("unsupported_scheme", "only http and https URLs can be fetched")
    if "@" in parts.netloc:
        raise UnsafeUrl("url_has_credentials", "URLs with credentials (user:pass@) are refused")
    host = (parts.hostname or "").rstrip(".").lower()
    if not host:
        raise UnsafeUrl("invalid_url", "url has no host")
    ip = parse_ip_literal(host)
    if "[" in parts.netloc and not isinstance(ip, ipaddress.IPv6Address):
        # An IPvFuture literal (`[v1.x]`): urlsplit takes `v1.x` as the host, a name the
        # URL never gave; no HTTP client connects to one.
        raise UnsafeUrl("invalid_url", "url's bracketed host is not an IPv6 address")
    if ip is None and (problem := _host_name_problem(host)) is not None:
        raise UnsafeUrl("invalid_url", problem)
    if ip is not None and not allow_private and not _allowed(ip, allow_networks):
        problem = address_problem(ip)
        if problem:
            raise UnsafeUrl("forbidden_address", f"refused: {problem}")
    shown = f"[{ip}]" if isinstance(ip, ipaddress.IPv6Address) else str(ip) if ip else host
    if port is not None and port != {"http": 80, "https": 443}[scheme]:
        shown = f"{shown}:{port}"
    return urlunsplit((scheme, shown, parts.path or "/", parts.query, ""))


def _host_name_problem(host: str) -> str | None:
    """Why `host` cannot be looked up (so that a fetch of it fails at once with a 400, not
    in the resolver or the HTTP client): an empty or over-long label (`a..com`, 64
    characters), a name IDNA cannot encode, or an `xn--` label that is no valid A-label
    (which the HTTP client refuses when it connects)."""
    try:
        encoded = host.encode("idna")  # empty and over-long labels, non-ASCII names
        _ = httpx.URL(f"http://{host}/").host  # the HTTP client's own check: A-labels
    except (UnicodeError, ValueError, httpx.InvalidURL):  # IDNAError is a UnicodeError
        return "url's host is not a valid host name"
    if len(encoded) > 253:
        return "url's host name is longer than 253 characters"
    return None


def check_addresses(
    addresses: Iterable[str], *, allow_private: bool, allow_networks: Sequence[Network] = ()
) -> list[str]:
    """The resolved addresses that may be connected to; UnsafeUrl if none may."""
    ok: list[str] = []
    refused: list[str] = []
    for a in addresses:
        ip = ipaddress.ip_address(a.split("%", 1)[0])
        if allow_private or _allowed(ip, allow_networks):
            problem = None
        else:
            problem = address_problem(ip)
        (refused if problem else ok).append(problem or a)
    if not ok:
        raise UnsafeUrl("forbidden_address", f"refused: {refused[0] if refused else 'no address'}")
    return ok


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """Resolve, check, and connect to the checked address (see the module docstring)."""

    def __init__(
        self,
        *,
        allow_private: bool,
        allow_networks: Sequence[Network] = (),
        resolve: Resolver | None = None,
    ) -> None:
        self.allow_private = allow_private
        self.allow_networks = tuple(allow_networks)
        self._resolve = resolve or _system_resolve
        self._inner = AutoBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        # One deadline for the whole connect (resolving, then the addresses in turn), as
        # curl's --connect-timeout; and, as curl, every address but the last gets half the
        # time left: a first address that drops the SYN ended the connect with a timeout,
        # never trying the next one (the retries resolve the same list, in the same order).
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        try:
            async with asyncio.timeout(timeout):
                addresses = await self._resolve(host, port)
        except socket.gaierror as e:
            if e.errno in NO_SUCH_NAME:
                raise UnknownHost(host, e) from e
            raise httpcore.ConnectError(f"cannot resolve the host: {e}") from e
        except (OSError, TimeoutError) as e:
            raise httpcore.ConnectError(f"cannot resolve the host: {e}") from e
        try:
            allowed = check_addresses(
                addresses, allow_private=self.allow_private, allow_networks=self.allow_networks
            )
        except UnsafeUrl as e:
            raise ForbiddenAddress(e.message) from None
        # Pinning: the socket goes to an address just checked (never the name, which a
        # rebinding DNS server could answer differently a moment later). httpcore keeps
        # the URL's host for the Host header and TLS SNI and certificate checks.
        last: Exception | None = None
        for n, address in enumerate(allowed):
            left = None if deadline is None else deadline - loop.time()
            if left is not None and left <= 0:
                raise httpcore.ConnectTimeout(f"no address answered in {timeout:g} s")
            if left is not None and n < len(allowed) - 1:
                left /= 2
            try:
                return await self._inner.connect_tcp(
                    address, port, left, local_address, socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as e:
                last = e
        assert last is not None
        raise last

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.AsyncNetworkStream:
        raise ForbiddenAddress("unix sockets are not fetched")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


# Name lookups run in threads of their own. getaddrinfo blocks, and a name whose DNS never
# answers holds its thread for the resolver's whole timeout (glibc: 5 s a try, a server,
# retried), which asyncio.timeout cannot end. On the loop's default executor (what
# loop.getaddrinfo uses), a few such names, each a POST /v1/fetches or a fetch, held every
# thread and stalled all else it runs: the local blob store's reads and writes, for every
# user of the process. Here they can only delay other lookups.
_LOOKUPS = ThreadPoolExecutor(max_workers=16, thread_name_prefix="cairn-lookup")


async def lookup(host: str, port: int | None) -> list[str]:
    """The addresses `host` resolves to, looked up off the loop's default executor."""
    infos = await asyncio.get_running_loop().run_in_executor(
        _LOOKUPS, functools.partial(socket.getaddrinfo, host, port, type=socket.SOCK_STREAM)
    )
    return list(dict.fromkeys(str(i[4][0]) for i in infos))


async def _system_resolve(host: str, port: int) -> list[str]:
    return await lookup(host, port)


# The resolver's answers that a name does not exist, or has no address (an authoritative
# NXDOMAIN or NODATA): asking again will not change them, as curl and wget know (they give
# up at once). A lookup that failed for now (EAI_AGAIN: no DNS server answered), or took
# too long, is retried like any connect failure.
NO_SUCH_NAME = frozenset(
    e for e in (socket.EAI_NONAME, getattr(socket, "EAI_NODATA", None)) if e is not None
)


class UnknownHost(httpcore.ConnectError):
    """Raised at connect time for a host name that does not exist (a ConnectError so httpx
    wraps it; the worker recognises it by its message prefix and fails the fetch without
    retrying, `host_not_found`)."""

    PREFIX = "unknown host"

    def __init__(self, host: str, error: socket.gaierror) -> None:
        super().__init__(f"{self.PREFIX}: {host[:255]!r} ({error.strerror})")


class ForbiddenAddress(httpcore.ConnectError):
    """Raised at connect time for a refused address (a ConnectError so httpx wraps it; the
    worker recognises it by its message prefix and fails the fetch without retrying)."""

    def __init__(self, message: str) -> None:
        super().__init__(f"forbidden address: {message.removeprefix('refused: ')}")


def guarded_client(
    *,
    allow_private: bool,
    timeout: httpx.Timeout,
    allow_networks: Sequence[Network] = (),
    resolve: Resolver | None = None,
    max_connections: int = 100,
) -> httpx.AsyncClient:
    """An httpx client whose every connection goes through GuardedBackend. No environment
    proxies (trust_env=False): a proxy would connect on our behalf, unchecked. No cookies:
    one client serves every fetch of every user, and httpx's jar sent the cookies one
    user's origin set (a session, a signed-download cookie) on another user's requests;
    curl and aria2 keep none either unless asked to."""
    transport = httpx.AsyncHTTPTransport(trust_env=False)
    transport._pool = httpcore.AsyncConnectionPool(  # the documented way is not exposed by httpx
        ssl_context=httpx.create_ssl_context(),
        max_connections=max_connections,
        max_keepalive_connections=20,
        keepalive_expiry=5.0,
        network_backend=GuardedBackend(
            allow_private=allow_private, allow_networks=allow_networks, resolve=resolve
        ),
    )
    return httpx.AsyncClient(
        transport=transport,
        timeout=timeout,
        follow_redirects=False,
        trust_env=False,
        cookies=CookieJar(DefaultCookiePolicy(allowed_domains=[])),  # takes none
        event_hooks={"response": [_take_location]},
    )


_LOCATION = "cairn.location"


async def _take_location(response: httpx.Response) -> None:
    """Move a redirect's Location out of httpx's sight. Even with follow_redirects off,
    httpx parses it to offer `next_request`, and its parser rejects spellings like
    `0177.0.0.1` with a protocol error (retried, and not reported as what it is). The
    fetch worker follows redirects itself, through `check_url`, which reads them all."""
    location = response.headers.get("location")
    if location is not None:
        response.extensions = {**response.extensions, _LOCATION: location}
        del response.headers["location"]


def redirect_location(response: httpx.Response) -> str | None:
    """The Location of a redirect answered through `guarded_client`."""
    value = response.extensions.get(_LOCATION)
    return value if isinstance(value, str) else None
