"""Run REDbot (redbot.org's HTTP linter, `redbot` on PyPI) on one URL; print its notes as JSON.

REDbot's command line cannot send an Authorization header, so this drives its library the
way its CLI does, with the header added: `python -m tests.api.clients.redbot_check URL
'Authorization: Bearer …'`. Prints `[{"level", "subject", "summary"}, ...]` covering the
main request and REDbot's own follow-up checks (conditional and range requests)."""

from __future__ import annotations

import json
import sys
from configparser import ConfigParser
from typing import Any

import thor
from redbot.resource import HttpResource


def main() -> None:
    url, *headers = sys.argv[1:]
    parser = ConfigParser()
    parser.read_dict({"redbot": {"enable_local_access": "True"}})
    config = parser["redbot"]
    resource = HttpResource(config)
    resource.set_request(url, headers=[tuple(h.split(": ", 1)) for h in headers])  # type: ignore[misc]

    @thor.events.on(resource)
    def check_done() -> None:
        thor.stop()

    resource.check()
    thor.run()
    notes: list[dict[str, Any]] = []
    checks = [("", resource), *((f"{k}:", sub) for k, sub in resource.subreqs.items())]
    for prefix, res in checks:
        for note in res.response.notes:
            notes.append(
                {
                    "level": note.level.value,
                    "subject": prefix + note.subject,
                    "summary": note.summary,
                }
            )
    json.dump({"status": resource.response.status_code, "notes": notes}, sys.stdout)


if __name__ == "__main__":
    main()
