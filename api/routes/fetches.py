"""URL fetches: ask Cairn to download a URL into a file, watch it, pause, resume, cancel, retry.

The API only records the request (RequestFetch) and answers 202; the fetch workers
(handlers/fetcher.py, `cairn run fetcher`) do the downloading. The fetch id is derived
from the owner, the normalised URL and a generation, so the same URL asked for at once by
many requests addresses one aggregate: one fetch, one writer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Annotated, Any

import msgspec
from litestar import Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter

from api.auth import Principal
from api.bucket_access import NO_BUCKET, check_writable
from api.commanding import SecuredController, load_owned, parse_id, reply_state, send_as
from api.context import ctx, now
from api.errors import ApiError
from api.paging import enum_query, page_response, status_filter
from api.schemas import BIGINT_MAX, Fetch, FetchAccepted, FetchPage, Short, ok
from api.taskparams import check_bucket
from bus.fetch.ssrf import Network, UnsafeUrl, check_addresses, check_url, lookup
from domain.commands import (
    CancelFetch,
    Command,
    PauseFetch,
    RequestFetch,
    ResumeFetch,
    RetryFetch,
)
from domain.fetches import FetchState, FetchStatus
from domain.files.keys import object_key_problem
from domain.policies import fetch_id
from projections import fetch_queries
from projections.queries import ORDERS

MAX_LIMIT = 1000
_ACTIVE = ("PENDING", "IN_PROGRESS", "PAUSED")


class CreateFetch(msgspec.Struct, forbid_unknown_fields=True):
    """Fetch `url` into a file, or with `bucket` and `key` into that object. The same URL
    again (same bucket and key) returns the same fetch (or its file) for CAIRN_FETCH_TTL;
    `refresh` fetches it again. Into another key it is another fetch, which takes the bytes
    of the caller's fetch of the URL completed within the TTL instead of downloading them
    again (not with `refresh`, nor when `sha256` names other bytes)."""

    url: str
    bucket: Short | None = None
    key: str | None = None
    sha256: Annotated[str, msgspec.Meta(pattern="^[0-9a-fA-F]{64}$")] | None = None
    refresh: bool = False


def _check_key(key: str | None, bucket: str | None) -> None:
    """A fetch into an object key: S3's key rules (domain.files.keys), and a bucket."""
    if key is None:
        return
    if (problem := object_key_problem(key)) is not None:
        raise ApiError(400, "invalid_key", problem, {"field": "key"})
    if bucket is None or bucket == NO_BUCKET:
        raise ApiError(400, "key_needs_bucket", "an object key needs a bucket", {"field": "key"})


async def _refuse_private_host(url: str, networks: Sequence[Network]) -> None:
    """Early answer for a host that resolves only to refused addresses (the worker checks
    again at connect time, against the address it actually connects to)."""
    from urllib.parse import urlsplit

    host = urlsplit(url).hostname or ""
    try:
        async with asyncio.timeout(5):
            addresses = await lookup(host, None)  # never on the default executor (ssrf)
    except (OSError, TimeoutError, UnicodeError):
        return  # unresolvable now: the worker's attempts will say so
    try:
        check_addresses(addresses, allow_private=False, allow_networks=networks)
    except UnsafeUrl as e:
        raise ApiError(400, e.code, e.message, {"field": "url"}) from None


def _view(state: FetchState, row: dict[str, Any] | None) -> dict[str, Any]:
    progress = fetch_queries.progress(
        state.bytes, state.total, state.status == FetchStatus.COMPLETED
    )
    speed = eta = None
    if row and state.status == FetchStatus.IN_PROGRESS and row.get("run_started_at"):
        started: datetime = row["run_started_at"]
        elapsed = (row["updated_at"] - started).total_seconds()
        gained = state.bytes - int(row["run_start_bytes"])
        if elapsed > 0 and gained > 0:
            speed = gained / elapsed
            if state.total is not None:
                eta = max(0.0, (state.total - state.bytes) / speed)
    return {
        "id": state.id,
        "url": state.url,
        "status": state.status.value,
        "bytes": state.bytes,
        "total": state.total,
        "progress": progress,
        "speed_bytes_per_second": speed,
        "eta_seconds": eta,
        "attempts": state.attempts,
        "last_error": state.last_error,
        "etag": state.etag,
        "last_modified": state.last_modified,
        "content_type": state.content_type,
        "content_encoding": state.content_encoding,
        "file_name": state.file_name,
        "bucket": state.bucket,
        "key": state.key,
        "sha256": state.completed_sha256 or state.sha256,
        "file_id": state.file_id,
        # A segmented fetch's byte ranges ([start, end)) and the bytes each holds.
        "segments": [{"start": g.start, "end": g.end, "bytes": g.bytes} for g in state.segments],
        "created_at": state.created_at.isoformat(),
        "updated_at": state.updated_at.isoformat(),
    }


_CONTROLLED = ok(200, Fetch, "The fetch after the command")


class FetchesController(SecuredController):
    path = "/v1/fetches"
    tags = ["fetches"]

    async def _owned(
        self, request: Request[Any, Any, Any], raw_id: str, who: Principal
    ) -> FetchState:
        state: FetchState = await load_owned(request, "fetches", raw_id, who)
        return state

    @post(
        "/",
        status_code=202,
        summary="Fetch a URL into a file",
        responses=ok(
            202, FetchAccepted, "Accepted (Location: the fetch); `reused`: an existing one"
        ),
    )
    async def create(
        self,
        request: Request[Any, Any, Any],
        data: JSONBody[CreateFetch],
        principal: NamedDependency[Principal],
    ) -> Response[Any]:
        c = ctx(request)
        s = c.settings
        try:
            url = check_url(
                data.url,
                allow_private=s.fetch_allow_private,
                allow_networks=s.fetch_allow_networks,
            )
        except UnsafeUrl as e:
            raise ApiError(400, e.code, e.message, {"field": "url"}) from None
        if not s.fetch_allow_private:
            await _refuse_private_host(url, s.fetch_allow_networks)
        _check_key(data.key, data.bucket)
        bucket = data.bucket or NO_BUCKET
        if data.key is None:
            # A bucket the caller may write: `default` or one of theirs (404 otherwise,
            # like a missing one).
            await check_bucket(c, bucket, principal.user, principal.admin)
        else:
            # The object will be the caller's: only into a bucket of theirs (an object
            # belongs to its bucket's owner), admins included.
            await check_writable(c, bucket, principal.user)
        latest = await fetch_queries.latest(c.pool, principal.user, url, bucket, data.key)
        generation = 0 if latest is None else latest["generation"] + (1 if data.refresh else 0)
        declared = data.sha256.lower() if data.sha256 else None
        # The read model may lag: the event store says whether this generation is still the
        # one to reuse (active, or completed within the TTL) or a new one must start.
        while True:
            fid = fetch_id(principal.user, url, generation, bucket, data.key)
            state: FetchState | None = await c.load("fetches", f"fetch-{fid}")
            if state is None or state.status.value in _ACTIVE:
                break
            if (
                state.status == FetchStatus.COMPLETED
                and state.updated_at > now() - timedelta(seconds=s.fetch_ttl)
                # Reused only as the declared digest's bytes (else fetched again, and
                # checked): domain.fetches.decide refuses to join another digest.
                and (declared is None or state.completed_sha256 == declared)
            ):
                break
            generation += 1
        result = await send_as(
            request,
            principal,
            RequestFetch,
            fid,
            owner=principal.user,
            url=url,
            generation=generation,
            bucket=bucket,
            key=data.key,
            sha256=declared,
        )
        st = reply_state(result)
        body = {
            "id": fid,
            "status": st.get("status"),
            "url": url,
            "file_id": st.get("file_id"),
            "reused": not result.applied,
        }
        return Response(body, status_code=202, headers={"Location": f"/v1/fetches/{fid}"})

    @get(
        "/{fetch_id:str}",
        summary="A fetch's state and progress",
        responses=ok(200, Fetch, "The fetch, as the event store has it"),
    )
    async def get_fetch(
        self,
        request: Request[Any, Any, Any],
        fetch_id: FromPath[str],
        principal: NamedDependency[Principal],
    ) -> dict[str, Any]:
        state = await self._owned(request, fetch_id, principal)
        row = await fetch_queries.get(ctx(request).pool, state.id)
        return _view(state, row)

    @get(
        "/",
        summary="List the caller's fetches",
        responses=ok(200, FetchPage, "A page of fetches; X-Total-Count holds the total"),
    )
    async def list_fetches(
        self,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        url: FromQuery[str | None] = None,
        status: FromQuery[str | None] = None,
        sort: FromQuery[str] = "created_at",
        order: FromQuery[str] = "desc",
        limit: Annotated[int, QueryParameter(ge=1, le=MAX_LIMIT)] = 50,
        offset: Annotated[int, QueryParameter(ge=0, le=BIGINT_MAX)] = 0,
    ) -> Response[Any]:
        c = ctx(request)
        status = status_filter(status, FetchStatus)
        sort = enum_query("sort", sort, fetch_queries.SORTS)
        order = enum_query("order", order, ORDERS)
        if url is not None:
            try:
                url = check_url(url, allow_private=True)  # only normalised, to match
            except UnsafeUrl as e:
                raise ApiError(400, e.code, e.message, {"field": "url"}) from None
        return await page_response(
            fetch_queries.page(
                c.pool,
                principal.user,
                url=url,
                status=status,
                sort=sort,
                order=order,
                limit=limit,
                offset=offset,
            ),
            limit,
            offset,
        )

    async def _control(
        self,
        request: Request[Any, Any, Any],
        raw_id: str,
        principal: Principal,
        cmd_type: type[Command],
    ) -> dict[str, Any]:
        fid = parse_id("fetches", raw_id)
        await send_as(request, principal, cmd_type, fid)
        state = await self._owned(request, fid, principal)
        return _view(state, await fetch_queries.get(ctx(request).pool, fid))

    @post(
        "/{fetch_id:str}/pause",
        status_code=200,
        summary="Pause (keeps every durable byte)",
        responses=_CONTROLLED,
    )
    async def pause(
        self,
        request: Request[Any, Any, Any],
        fetch_id: FromPath[str],
        principal: NamedDependency[Principal],
    ) -> dict[str, Any]:
        return await self._control(request, fetch_id, principal, PauseFetch)

    @post(
        "/{fetch_id:str}/resume",
        status_code=200,
        summary="Resume a paused fetch",
        responses=_CONTROLLED,
    )
    async def resume(
        self,
        request: Request[Any, Any, Any],
        fetch_id: FromPath[str],
        principal: NamedDependency[Principal],
    ) -> dict[str, Any]:
        return await self._control(request, fetch_id, principal, ResumeFetch)

    @post(
        "/{fetch_id:str}/cancel",
        status_code=200,
        summary="Cancel a fetch",
        responses=_CONTROLLED,
    )
    async def cancel(
        self,
        request: Request[Any, Any, Any],
        fetch_id: FromPath[str],
        principal: NamedDependency[Principal],
    ) -> dict[str, Any]:
        return await self._control(request, fetch_id, principal, CancelFetch)

    @post(
        "/{fetch_id:str}/retry",
        status_code=200,
        summary="Retry a failed fetch",
        responses=_CONTROLLED,
    )
    async def retry(
        self,
        request: Request[Any, Any, Any],
        fetch_id: FromPath[str],
        principal: NamedDependency[Principal],
    ) -> dict[str, Any]:
        return await self._control(request, fetch_id, principal, RetryFetch)
