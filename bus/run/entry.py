"""The `cairn` console script's entry point, importing nothing before it can catch Ctrl-C.

`cairn` imports for about a second before any command runs (settings, the client's HTTP
and terminal libraries): a Ctrl-C in that second raised KeyboardInterrupt from inside an
import, and the user got a traceback instead of the one line and exit 130 a Ctrl-C gets
once a command runs. So the script's entry is this module, which catches it around the
import of the real one (bus/run/cli.py).
"""

from __future__ import annotations

import sys

EXIT_INTERRUPTED = 130  # the shell convention for "ended by SIGINT", as bus/run/cli.py


def main() -> int:
    try:
        from bus.run.cli import main as cli_main
    except KeyboardInterrupt:
        print("cairn: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    return cli_main()


if __name__ == "__main__":
    sys.exit(main())
