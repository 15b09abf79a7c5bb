"""Cairn's benchmark harness: `just bench [--quick] [SCENARIO...]`.

Starts Cairn on its embedded default in a temporary data dir, starts the baselines it is
compared against (nginx, a bare Python streaming endpoint, curl as the client, and for tus
the @tus/server reference server with tus-js-client as the client), runs each
selected scenario a few times after a warm-up and prints the medians with the ratio to the
baseline measured in the same run. Results land in `tests/bench/results/` (not committed).

Modules: `core` (scales, results, statistics, output), `cairn` (the system under test),
`baselines` (nginx, the bare endpoint, curl, @tus/server), `memory` (RSS/CPU sampling of
every Cairn process), `client` (the native upload protocol over httpx), and one module per
scenario group: `uploads`, `tus` (the upload.tus_* scenarios), `downloads`, `bus`,
`growth`, `fetches` (fetch.url_cache), `listing` (objects.list), `events` (SSE),
`events_ws` (the WebSocket stream against SSE), `pending`. The Node side of tus: `package.json` and `package-lock.json`
(installed into node_modules with `npm ci`), `tus_server.mjs` (the reference server) and
`tus_client.mjs` (tus-js-client, the one client). None of the file names start with
`test_`, so pytest never collects them.
"""
