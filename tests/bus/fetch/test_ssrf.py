"""The SSRF rules (pure) and the connect-time guard (a real resolver and socket)."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import threading

import httpcore
import httpx
import pytest

from bus.fetch import origin
from bus.fetch.origin import Fatal, Retryable
from bus.fetch.ssrf import (
    GuardedBackend,
    UnknownHost,
    UnsafeUrl,
    address_problem,
    check_addresses,
    check_url,
    guarded_client,
    parse_ip_literal,
    parse_networks,
)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/",
        "http://2130706433/",  # decimal
        "http://0177.0.0.1/",  # octal
        "http://0x7f.1/",  # hex, short form
        "http://127.1/",
        "http://[::1]/",
        "http://[::ffff:127.0.0.1]/",  # IPv4-mapped
        "http://[::ffff:a9fe:a9fe]/",  # mapped metadata
        "http://[2002:a9fe:a9fe::]/",  # 6to4 of 169.254.169.254
        "http://[64:ff9b::10.0.0.1]/",  # NAT64
        "http://10.1.2.3/",
        "http://172.16.0.1/",
        "http://192.168.1.1/",
        "http://169.254.169.254/latest/meta-data/",  # cloud metadata
        "http://100.100.100.200/",  # Alibaba metadata (CGNAT range)
        "http://[fd00:ec2::254]/",  # AWS metadata over IPv6
        "http://[fe80::1]/",
        "http://[fc00::1]/",
        "http://224.0.0.1/",
        "http://[ff02::1]/",
        "http://0.0.0.0/",
        "http://[::]/",
    ],
)
def test_private_literals_are_refused(url: str) -> None:
    with pytest.raises(UnsafeUrl) as e:
        check_url(url)
    assert e.value.code == "forbidden_address"
    check_url(url, allow_private=True)  # the setting lifts the address rule only


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("ftp://example.com/", "unsupported_scheme"),
        ("file:///etc/passwd", "unsupported_scheme"),
        ("gopher://example.com/", "unsupported_scheme"),
        ("http://", "invalid_url"),
        ("http://user:pw@example.com/", "url_has_credentials"),
        ("http://user@example.com/", "url_has_credentials"),
        ("http://example.com/a b", "invalid_url"),
        ("http://example.com/" + "x" * 8200, "invalid_url"),
        ("http://example.com:99999/", "invalid_url"),
        ("http://example.com:0/", "invalid_url"),  # was accepted: 6 connects refused
        # Host names nothing could look up: the API answered 500 (the resolver's IDNA
        # error) and an `xn--` label crashed the worker's runs over and over.
        ("http://a..com/", "invalid_url"),
        ("http://.example.com/", "invalid_url"),
        ("http://" + "a" * 64 + ".com/", "invalid_url"),
        ("http://" + ("a" * 60 + ".") * 5 + "com/", "invalid_url"),
        ("http://xn--zz/", "invalid_url"),
        # An IPvFuture literal (RFC 3986): urlsplit gives `v1.x` as the host, and the URL
        # was fetched as http://v1.x/, a host name the URL never named.
        ("http://[v1.x]/", "invalid_url"),
        ("http://[v7.example.com]:8080/", "invalid_url"),
    ],
)
def test_bad_urls(url: str, code: str) -> None:
    with pytest.raises(UnsafeUrl) as e:
        check_url(url, allow_private=True)
    assert e.value.code == code
    assert "pw" not in e.value.message


@pytest.mark.parametrize(
    "url", ["http://bücher.de/", "http://xn--bcher-kva.de/", "http://my_host.example.com/"]
)
def test_host_names_that_resolve_are_kept(url: str) -> None:
    assert check_url(url, allow_private=True).startswith("http://")


def test_normalisation() -> None:
    assert check_url("HTTP://Example.COM:80/a?b=1#frag") == "http://example.com/a?b=1"
    assert check_url("https://example.com:8443") == "https://example.com:8443/"
    assert check_url("http://8.8.8.8/x") == "http://8.8.8.8/x"


def test_literal_spellings() -> None:
    assert parse_ip_literal("2130706433") == ipaddress.IPv4Address("127.0.0.1")
    assert parse_ip_literal("0300.0250.0.1") == ipaddress.IPv4Address("192.168.0.1")
    assert parse_ip_literal("example.com") is None
    assert parse_ip_literal("1.2.3.4.5") is None
    assert address_problem(ipaddress.ip_address("93.184.216.34")) is None
    assert address_problem(ipaddress.ip_address("2606:4700::1111")) is None


def test_resolved_addresses_are_filtered() -> None:
    assert check_addresses(["10.0.0.1", "93.184.216.34"], allow_private=False) == ["93.184.216.34"]
    with pytest.raises(UnsafeUrl):
        check_addresses(["127.0.0.1", "::1"], allow_private=False)


async def test_connect_time_check_refuses_a_name_resolving_to_loopback() -> None:
    # `localhost` passes the URL rules (a name, not a literal); the backend resolves it
    # itself and refuses before any connection is made.
    async with guarded_client(allow_private=False, timeout=httpx.Timeout(5)) as client:
        with pytest.raises(httpx.ConnectError) as e:
            await client.get("http://localhost:9/")
        assert str(e.value).startswith("forbidden address")


def test_allowed_networks_lift_the_rule_for_those_addresses_only() -> None:
    nets = parse_networks(["127.0.0.2/32", " fd12::/16 "])
    assert check_url("http://127.0.0.2:81/x", allow_networks=nets) == "http://127.0.0.2:81/x"
    for url in ("http://127.0.0.1/", "http://0x7f000001/", "http://[::ffff:127.0.0.1]/"):
        with pytest.raises(UnsafeUrl):
            check_url(url, allow_networks=nets)
    assert check_addresses(
        ["127.0.0.1", "127.0.0.2"], allow_private=False, allow_networks=nets
    ) == ["127.0.0.2"]
    assert check_addresses(["fd12::5"], allow_private=False, allow_networks=nets) == ["fd12::5"]


async def test_the_connection_goes_to_the_checked_address_dns_rebinding() -> None:
    """The backend resolves once per connection, checks, and connects to that very
    address: a rebinding resolver (allowed answer first, loopback next) gets one
    connection to the allowed address and a refusal, never a socket to 127.0.0.1."""
    from aiohttp import web

    seen: list[tuple[str, str | None]] = []

    async def handler(request: web.Request) -> web.Response:
        assert request.transport is not None
        seen.append((request.transport.get_extra_info("sockname")[0], request.host))
        return web.Response(text="ok", headers={"Connection": "close"})

    app = web.Application()
    app.router.add_get("/", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.2", 0)
    await site.start()
    port = runner.addresses[0][1]
    # a socket on 127.0.0.1 with the same port, that must never be connected to
    trap = socket.socket()
    trap.bind(("127.0.0.1", port))
    trap.listen()
    trap.setblocking(False)
    answers = iter([["127.0.0.2"], ["127.0.0.1"]])
    asked: list[str] = []

    async def rebinding(host: str, _port: int) -> list[str]:
        asked.append(host)
        return next(answers)

    try:
        async with guarded_client(
            allow_private=False,
            allow_networks=parse_networks(["127.0.0.2/32"]),
            resolve=rebinding,
            timeout=httpx.Timeout(5),
        ) as client:
            r = await client.get(f"http://rebind.example:{port}/")
            assert r.status_code == 200 and r.text == "ok"
            with pytest.raises(httpx.ConnectError) as e:
                await client.get(f"http://rebind.example:{port}/")
            assert str(e.value) == "forbidden address: loopback address 127.0.0.1"
        # The name never reached a system resolver (it does not exist): the socket went
        # to the checked address, and the Host header kept the name.
        assert asked == ["rebind.example", "rebind.example"]
        assert seen == [("127.0.0.2", f"rebind.example:{port}")]
        with pytest.raises(BlockingIOError):
            trap.accept()  # nobody connected to the loopback trap
    finally:
        trap.close()
        await runner.cleanup()


async def test_a_dead_first_address_leaves_time_for_the_next() -> None:
    """A name whose first address drops the SYN: its connect timeout ended the whole
    connect, the second address (which answers) never tried, and every retry resolved
    the same list. Now, as curl, each address but the last gets half the time left, and
    all of them together no more than the connect timeout."""
    from httpcore._backends.auto import AutoBackend

    given: list[tuple[str, float]] = []
    stream = object()

    class FirstDead(AutoBackend):
        async def connect_tcp(  # type: ignore[override]
            self, host: str, port: int, timeout: float | None = None, *args: object
        ) -> object:
            assert timeout is not None
            given.append((host, timeout))
            if host == "93.184.216.1":
                await asyncio.sleep(timeout)  # what a dropped SYN costs: the whole timeout
                raise httpcore.ConnectTimeout("timed out")
            return stream

    async def two(_host: str, _port: int) -> list[str]:
        return ["93.184.216.1", "93.184.216.2"]

    backend = GuardedBackend(allow_private=False, resolve=two)
    backend._inner = FirstDead()
    assert await backend.connect_tcp("two.example", 80, timeout=0.4) is stream
    assert [h for h, _ in given] == ["93.184.216.1", "93.184.216.2"]
    assert sum(t for _, t in given) <= 0.4, given


async def test_no_cookie_an_origin_sets_is_sent_again() -> None:
    """One client serves every fetch of every user: a cookie one origin set (a session,
    a signed-download cookie) was kept in httpx's jar and sent on later requests to that
    host, another user's fetch included."""
    from aiohttp import web

    sent: list[str | None] = []

    async def set_cookie(request: web.Request) -> web.Response:
        sent.append(request.headers.get("Cookie"))
        response = web.Response(text="ok")
        response.set_cookie("session", "alice-secret")
        return response

    app = web.Application()
    app.router.add_get("/", set_cookie)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    try:
        async with guarded_client(allow_private=True, timeout=httpx.Timeout(5)) as client:
            for _ in range(2):
                r = await client.send(client.build_request("GET", f"http://127.0.0.1:{port}/"))
                assert r.status_code == 200 and "alice-secret" in r.headers["set-cookie"]
            assert sent == [None, None]
            assert not client.cookies
    finally:
        await runner.cleanup()


async def test_lookups_that_hang_never_hold_the_loops_default_executor(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """getaddrinfo blocks its thread for the resolver's whole timeout, which no
    asyncio.timeout ends. Done on the loop's default executor, a few names whose DNS
    never answers held all its threads, and everything else it runs (the local blob
    store's reads and writes) waited for them."""
    release = threading.Event()
    real = socket.getaddrinfo

    def hanging(host: str, *args: object, **kwargs: object) -> object:
        if host == "hangs.example":
            release.wait(30)  # a DNS server that never answers, until the test ends
            raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
        return real(host, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(socket, "getaddrinfo", hanging)
    backend = GuardedBackend(allow_private=False)
    try:
        for _ in range(40):
            with pytest.raises(httpcore.ConnectError, match="cannot resolve"):
                await backend.connect_tcp("hangs.example", 80, timeout=0.01)
        loop = asyncio.get_running_loop()
        assert await asyncio.wait_for(loop.run_in_executor(None, int), 5) == 0
    finally:
        release.set()


@pytest.mark.parametrize(
    ("errno", "fatal"),
    [(socket.EAI_NONAME, True), (socket.EAI_AGAIN, False), (socket.EAI_FAIL, False)],
)
async def test_a_name_that_does_not_exist_is_told_from_a_lookup_that_failed_for_now(
    errno: int, fatal: bool
) -> None:
    """NXDOMAIN is the resolver's final word (curl and wget give up at once): the worker
    fails such a fetch as host_not_found instead of retrying it for minutes. A lookup that
    failed for now (no DNS server answered) stays a failure to retry."""

    async def resolve(host: str, port: int) -> list[str]:
        raise socket.gaierror(errno, "resolver says no")

    backend = GuardedBackend(allow_private=False, resolve=resolve)
    with pytest.raises(httpcore.ConnectError) as e:
        await backend.connect_tcp("gone.example", 80, timeout=1)
    assert isinstance(e.value, UnknownHost) is fatal
    classified = origin.classify(httpx.ConnectError(str(e.value)))
    if fatal:
        assert isinstance(classified, Fatal) and classified.code == "host_not_found"
        assert "'gone.example'" in classified.message
    else:
        assert isinstance(classified, Retryable) and "cannot resolve" in str(classified)
