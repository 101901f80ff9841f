"""The hosts that Ray's processes listen on, sampled in a thread while a run lasts (psutil)."""

from __future__ import annotations

import os
import re
import threading
import time


def processes_matching(pattern: str) -> list:
    """Processes (not this one) whose command line matches the regex `pattern`."""
    import psutil

    found = []
    for process in psutil.process_iter(["cmdline"]):
        if process.pid != os.getpid() and re.search(pattern, " ".join(process.info["cmdline"] or [])):
            found.append(process)
    return found


class ListeningSockets(threading.Thread):
    """host -> names of the matching processes (and of `pids`) listening on it."""

    def __init__(self, pattern: str, pids: dict[int, str] | None = None):
        super().__init__(daemon=True)
        self.pattern, self.pids, self.hosts = pattern, dict(pids or {}), {}
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            self.sample()
            time.sleep(1)

    def sample(self) -> None:
        import psutil

        names = self.pids | {p.pid: p.name() for p in processes_matching(self.pattern)}
        for connection in psutil.net_connections(kind="tcp"):
            if connection.status == psutil.CONN_LISTEN and connection.pid in names:
                host = connection.laddr.ip.removeprefix("::ffff:")
                self.hosts.setdefault(host, set()).add(names[connection.pid])

    def stop(self) -> dict[str, set[str]]:
        self.done.set()
        self.join()
        return self.hosts
