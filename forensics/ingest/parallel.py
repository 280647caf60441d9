"""Parse log files in worker processes, so that every core runs the Python side of parsing too.

Each worker is a fresh interpreter (`python -m forensics.ingest.parallel`) that reads its share
of the files from stdin, parses them with `parse_log` into the run's work directory, and writes
their line accounting back on stdout. A fresh interpreter, not a fork, because Polars' thread
pool does not survive `fork`, and not `multiprocessing`'s spawn, which re-imports the caller's
main module.
"""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

from forensics.discover import Source
from forensics.ingest.logs import LogLoad, parse_log

Task = tuple[Source, int, Path]  # a file, its id, the directory for its Parquet parts


def parse_in_workers(tasks: list[Task], workers: int) -> list[LogLoad]:
    """The loads of `tasks`, in order, parsed by `workers` processes sharing the bytes evenly."""
    shares: list[list[tuple[int, Task]]] = [[] for _ in range(workers)]
    sizes = [0] * workers
    for i, task in sorted(enumerate(tasks), key=lambda it: -it[1][0].size):
        least = sizes.index(min(sizes))
        shares[least].append((i, task))
        sizes[least] += task[0].size
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "forensics.ingest.parallel"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        for share in shares
        if share
    ]
    for proc, share in zip(procs, shares, strict=False):
        assert proc.stdin is not None
        proc.stdin.write(pickle.dumps(share))
        proc.stdin.close()
    loads: dict[int, LogLoad] = {}
    for proc in procs:
        assert proc.stdout is not None
        out = proc.stdout.read()
        if proc.wait() != 0:
            raise RuntimeError(f"a log parsing worker failed (exit status {proc.returncode})")
        loads.update(pickle.loads(out))
    return [loads[i] for i in range(len(tasks))]


def _work() -> None:
    share: list[tuple[int, Task]] = pickle.load(sys.stdin.buffer)
    pickle.dump({i: parse_log(*task) for i, task in share}, sys.stdout.buffer)


if __name__ == "__main__":
    _work()
