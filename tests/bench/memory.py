"""Peak RSS and CPU time of every Cairn process, sampled in a background thread.

The processes are the supervisor (`cairn up`), its children `python -m bus.run.cli run KIND`
(labelled KIND), the Tansu broker (`tansu`) and PostgreSQL, which `pg_ctl` daemonises, so
it is found through the cluster's `postmaster.pid` rather than the supervisor's tree. For
postgres the peak is that of its largest process: every backend maps the same shared
buffers, so a sum over backends would count them many times. CPU time is summed per label.

Windows are nested freely: a scenario opens one for its whole run, and may open others
around single measurements (for instance Cairn's uploads only, to see where the time goes).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil

SAMPLE_INTERVAL = 0.1
REFRESH_INTERVAL = 1.0  # how often the process list is rebuilt (children may restart)


def label_of(proc: psutil.Process, supervisor_pid: int) -> str | None:
    try:
        if proc.pid == supervisor_pid:
            return "supervisor"
        cmd = proc.cmdline()
        name = proc.name()
    except psutil.Error:
        return None
    if "bus.run.cli" in cmd and "run" in cmd:
        i = cmd.index("run")
        return cmd[i + 1] if i + 1 < len(cmd) else "run"
    if "tansu" in name or any("tansu" in c for c in cmd[:1]):
        return "tansu"
    if name.startswith("postgres") or any("postgres" in c for c in cmd[:1]):
        return "postgres"
    return name or None


@dataclass
class Window:
    started: float
    peak: dict[str, int] = field(default_factory=dict)  # label -> bytes
    cpu_start: dict[int, float] = field(default_factory=dict)  # pid -> cpu s at open
    cpu_seconds: dict[str, float] = field(default_factory=dict)  # filled at close


class Sampler:
    def __init__(self, supervisor_pid: int, pg_dir: Path) -> None:
        self.supervisor_pid = supervisor_pid
        self.pg_dir = pg_dir
        self._procs: dict[int, tuple[psutil.Process, str]] = {}
        self._cpu: dict[int, float] = {}  # pid -> last seen cpu s
        self._label: dict[int, str] = {}
        self._windows: list[Window] = []
        self._lock = threading.Lock()
        # Sampling runs in the thread and, at window edges, in the caller: one at a time
        # (psutil's oneshot caches are per Process object).
        self._sampling = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="rss-sampler", daemon=True)
        self._refreshed = 0.0

    def start(self) -> None:
        self._refresh()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    # ---- discovery and sampling

    def _postmaster(self) -> psutil.Process | None:
        try:
            pid = int((self.pg_dir / "postmaster.pid").read_text().splitlines()[0])
            return psutil.Process(pid)
        except (OSError, ValueError, IndexError, psutil.Error):
            return None

    def _refresh(self) -> None:
        found: list[psutil.Process] = []
        with contextlib.suppress(psutil.Error):
            sup = psutil.Process(self.supervisor_pid)
            found += [sup, *sup.children(recursive=True)]
        pm = self._postmaster()
        if pm is not None:
            with contextlib.suppress(psutil.Error):
                found += [pm, *pm.children(recursive=True)]
        procs = {}
        for p in found:
            known = self._procs.get(p.pid)
            if known is not None:
                procs[p.pid] = known
                continue
            label = label_of(p, self.supervisor_pid)
            if label is not None:
                procs[p.pid] = (p, label)
        with self._lock:
            self._procs = procs
        self._refreshed = time.monotonic()

    def _sample(self, refresh: bool = False) -> None:
        with self._sampling:
            self._sample_locked(refresh)

    def _sample_locked(self, refresh: bool) -> None:
        if refresh or time.monotonic() - self._refreshed > REFRESH_INTERVAL:
            self._refresh()
        rss: dict[str, int] = {}
        for pid, (p, label) in list(self._procs.items()):
            try:
                with p.oneshot():
                    mem = p.memory_info().rss
                    t = p.cpu_times()
            except psutil.Error:
                continue
            if label == "postgres":
                rss[label] = max(rss.get(label, 0), mem)
            else:
                rss[label] = rss.get(label, 0) + mem
            with self._lock:
                self._cpu[pid] = t.user + t.system
                self._label[pid] = label
        with self._lock:
            for w in self._windows:
                for label, v in rss.items():
                    if v > w.peak.get(label, 0):
                        w.peak[label] = v

    def _loop(self) -> None:
        while not self._stop.wait(SAMPLE_INTERVAL):
            with contextlib.suppress(Exception):  # never let sampling take the bench down
                self._sample()

    # ---- windows

    @contextlib.contextmanager
    def window(self) -> Iterator[Window]:
        self._sample(refresh=True)
        w = Window(started=time.monotonic())
        with self._lock:
            w.cpu_start = dict(self._cpu)
            self._windows.append(w)
        try:
            yield w
        finally:
            self._sample(refresh=True)
            with self._lock:
                self._windows.remove(w)
                cpu: dict[str, float] = {}
                for pid, now in self._cpu.items():
                    # A process born inside the window started from zero.
                    used = now - w.cpu_start.get(pid, 0.0)
                    label = self._label.get(pid, "?")
                    cpu[label] = cpu.get(label, 0.0) + max(used, 0.0)
                w.cpu_seconds = cpu
