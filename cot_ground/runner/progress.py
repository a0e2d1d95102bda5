"""Progress of a run: a rich bar per pipeline on a terminal, periodic log lines otherwise."""

from __future__ import annotations

import logging
import sys
import time
from typing import Protocol

log = logging.getLogger("cot_ground.run")


class Progress(Protocol):
    """What the runner reports as it goes."""

    def start(self, pipeline: str, total: int, done: int) -> None:
        """A pipeline begins: ``done`` of ``total`` examples were finished by earlier sessions."""

    def advance(self, pipeline: str, failed: bool = False) -> None:
        """One more example of ``pipeline`` is written."""

    def finish(self, pipeline: str) -> None:
        """The pipeline has stopped (finished or interrupted)."""

    def close(self) -> None:
        """The run is over."""


def _rate_eta(done_now: int, remaining: int, elapsed: float) -> tuple[float, float | None]:
    rate = done_now / elapsed if elapsed > 0 else 0.0
    return rate, (remaining / rate if rate > 0 else None)


def _fmt_eta(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


class LogProgress:
    """Plain lines (``pipeline: 120/4295 (2.8%) 3.1 ex/s ETA 22m10s, 2 failed``) every
    ``every_s`` seconds and at the end of each pipeline."""

    def __init__(self, every_s: float = 10.0) -> None:
        self.every_s = every_s
        self._state: dict[str, dict[str, float]] = {}

    def start(self, pipeline: str, total: int, done: int) -> None:
        """See :class:`Progress`."""
        now = time.monotonic()
        self._state[pipeline] = {
            "total": total,
            "done": done,
            "start_done": done,
            "failed": 0,
            "t0": now,
            "last": now,
        }
        log.info(
            "%s: %d of %d examples already done, %d to run", pipeline, done, total, total - done
        )

    def advance(self, pipeline: str, failed: bool = False) -> None:
        """See :class:`Progress`."""
        st = self._state[pipeline]
        st["done"] += 1
        st["failed"] += int(failed)
        now = time.monotonic()
        if now - st["last"] >= self.every_s:
            st["last"] = now
            self._line(pipeline)

    def _line(self, pipeline: str) -> None:
        st = self._state[pipeline]
        rate, eta = _rate_eta(
            int(st["done"] - st["start_done"]),
            int(st["total"] - st["done"]),
            time.monotonic() - st["t0"],
        )
        pct = 100.0 * st["done"] / st["total"] if st["total"] else 100.0
        log.info(
            "%s: %d/%d (%.1f%%) %.2f ex/s ETA %s, %d failed",
            pipeline,
            st["done"],
            st["total"],
            pct,
            rate,
            _fmt_eta(eta),
            st["failed"],
        )

    def finish(self, pipeline: str) -> None:
        """See :class:`Progress`."""
        self._line(pipeline)

    def close(self) -> None:
        """See :class:`Progress`."""


class RichProgress:
    """One rich progress bar per pipeline: done/total, rate, elapsed and ETA."""

    def __init__(self) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        from rich.progress import Progress as RichBar

        self._bar = RichBar(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            TextColumn("[red]{task.fields[failed]}"),
            transient=False,
        )
        self._tasks: dict[str, int] = {}
        self._stats: dict[str, list[float]] = {}
        self._bar.start()

    def start(self, pipeline: str, total: int, done: int) -> None:
        """See :class:`Progress`."""
        self._tasks[pipeline] = self._bar.add_task(
            pipeline, total=total, completed=done, rate="", failed=""
        )
        self._stats[pipeline] = [time.monotonic(), 0, 0]

    def advance(self, pipeline: str, failed: bool = False) -> None:
        """See :class:`Progress`."""
        st = self._stats[pipeline]
        st[1] += 1
        st[2] += int(failed)
        elapsed = time.monotonic() - st[0]
        rate = f"{st[1] / elapsed:.2f} ex/s" if elapsed > 0 else ""
        failed_text = f"{int(st[2])} failed" if st[2] else ""
        self._bar.update(self._tasks[pipeline], advance=1, rate=rate, failed=failed_text)

    def finish(self, pipeline: str) -> None:
        """See :class:`Progress`."""
        self._bar.refresh()

    def close(self) -> None:
        """See :class:`Progress`."""
        self._bar.stop()


def default_progress() -> Progress:
    """A rich bar when stderr is a terminal, log lines otherwise."""
    return RichProgress() if sys.stderr.isatty() else LogProgress()
