"""`cairn up`: every process kind serves its own Prometheus metrics, and the api logs each
request as one JSON access line.

A real `cairn up` (tests/faults/proc.py) on free ports: the banner names a metrics URL per
non-api kind; after one upload through the API, each URL shows what that kind did.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import httpx
import pytest

from tests.faults.proc import Up, cairn_env, cli, poll, sample, start_up


@pytest.mark.timeout(240)
async def test_every_kind_serves_metrics_and_the_api_logs_requests(
    tmp_path: Path, runs: list[Up]
) -> None:
    env = cairn_env(tmp_path / "data")
    env["CAIRN_LOG_LEVEL"] = "info"
    env["CAIRN_LOG_JSON"] = "true"
    up = start_up(env, tmp_path, "up")
    runs.append(up)
    await up.wait_up()
    banner = up.out.read_text()
    urls = dict(re.findall(r"Metrics (\w+)\s+(http://\S+/metrics)", banner))
    assert sorted(urls) == ["actors", "fetcher", "handlers", "projector", "relay", "tasks"], banner
    assert len(set(urls.values())) == 6, "each child its own port"

    code, token, err = await cli(env, "token", "alice")
    assert code == 0, err
    auth = {"Authorization": f"Bearer {token.strip()}", "X-Request-ID": "metrics-test-1"}
    async with httpx.AsyncClient(base_url=up.url, headers=auth, timeout=30) as c:
        deadline = time.monotonic() + 60
        while True:  # the actors may still be joining their group: 503 means retry
            r = await c.post("/v1/uploads", json={"file_name": "m.bin", "file_size": 5})
            if r.status_code != 503 or time.monotonic() > deadline:
                break
        assert r.status_code == 201, r.text
        uid = r.json()["id"]
        r = await c.put(f"/v1/uploads/{uid}/chunks/0", content=b"hello")
        assert r.status_code == 201, r.text
        r = await c.post(f"/v1/uploads/{uid}/complete")
        assert r.status_code == 200, r.text
        file_id = r.json()["file_id"]
        # Completion reads the file to detect its type: read bytes before the download.
        read_before = sample((await c.get("/metrics")).text, "cairn_blob_read_bytes_total") or 0
        r = await c.get(f"/v1/files/{file_id}/content")
        assert r.content == b"hello"

        api = (await c.get("/metrics")).text
    route = "/v1/uploads/{upload_id:uuid}/chunks/{index:int}"
    chunk_routes = re.findall(r'route="(/v1/uploads/[^"]*chunks[^"]*)"', api)
    assert chunk_routes, api
    route = chunk_routes[0]
    assert sample(api, "cairn_http_requests_total", method="PUT", route=route, status="201") == 1
    assert sample(api, "cairn_http_request_duration_seconds_count", method="PUT", route=route)
    assert sample(api, "cairn_http_request_body_bytes_total", route=route) == 5
    assert sample(api, "cairn_commands_sent_total", type="StoreChunk", outcome="ok") == 1
    assert sample(api, "cairn_command_round_trip_seconds_count", type="StoreChunk") == 1
    assert sample(api, "cairn_blob_written_bytes_total") == 5
    assert sample(api, "cairn_blob_read_bytes_total") == read_before + 5
    assert sample(api, "cairn_transfers_in_flight", direction="upload") == 0
    assert sample(api, "cairn_eventstore_last_position")

    async def scrape(kind: str, name: str, **labels: str) -> str | None:
        async with httpx.AsyncClient(timeout=5) as c:
            text = (await c.get(urls[kind])).text
        return text if sample(text, name, **labels) else None

    await poll(
        "actors metrics",
        lambda: scrape(
            "actors", "cairn_commands_handled_total", type="CompleteUpload", outcome="applied"
        ),
        30,
    )
    await poll(
        "actors appended events",
        lambda: scrape("actors", "cairn_events_appended_total", type="UploadCompleted"),
        30,
    )
    await poll("relay metrics", lambda: scrape("relay", "cairn_relay_leader", relay="main"), 30)
    await poll("relay published", lambda: scrape("relay", "cairn_relay_published_events_total"), 30)
    await poll(
        "projector metrics",
        lambda: scrape("projector", "cairn_projection_events_applied_total", projection="files"),
        30,
    )
    # The file followed the completion in the actors' same step (domain.policies.follow_ups),
    # counted there; the handlers saw the events and had nothing left to send.
    await poll(
        "the file's follow-up",
        lambda: scrape(
            "actors", "cairn_commands_handled_total", type="CreateFile", outcome="applied"
        ),
        30,
    )
    text = await poll(
        "handlers metrics",
        lambda: scrape("handlers", "faststream_received_messages_total", app_name="cairn-handlers"),
        30,
    )
    assert re.search(r'cairn_kafka_consumer_lag_messages\{group="cairn-handlers"', text), text

    # One JSON access line per request, with the request id the client sent.
    def access_lines() -> list[dict[str, object]]:
        out = []
        for line in up.err.read_text(errors="replace").splitlines():
            if line.startswith("{") and '"event": "request"' in line:
                out.append(json.loads(line))
        return out

    lines = await poll("the access log", lambda: access_lines() or None, 10)
    first = next(x for x in lines if x["request_id"] == "metrics-test-1" and x["method"] == "PUT")
    assert first["status"] == 201 and first["route"] == route and first["bytes_in"] == 5
    assert first["process"] == "api" and isinstance(first["duration_ms"], float)
    plain = [line for line in up.err.read_text().splitlines() if not line.startswith("{")]
    assert plain == [], "every line on stderr is JSON"
    assert await up.stop() == 0, up.log()
