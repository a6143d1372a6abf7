"""Progress with ETA: a rich bar on a terminal, sparse plain lines otherwise (CI, pipes, rank > 0 silent)."""

from __future__ import annotations

import sys
import time
from typing import Any

from torch_cookbook.engine.distributed import is_main_process


class Progress:
    """`with Progress(total, "train") as bar: bar.advance(1, loss=0.3)`."""

    def __init__(self, total: int, description: str, start: int = 0, quiet: bool = False) -> None:
        self.total = max(int(total), 1)
        self.description = description
        self.done = start
        self.start_done = start
        self.quiet = quiet or not is_main_process()
        self.interactive = sys.stderr.isatty() and not self.quiet
        self._rich: Any = None
        self._task: Any = None
        self._t0 = time.perf_counter()
        self._last_print = 0.0
        self._info: dict[str, Any] = {}

    def __enter__(self) -> Progress:
        if self.interactive:
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
            from rich.progress import Progress as RichProgress

            self._rich = RichProgress(
                TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(), TextColumn("{task.fields[info]}"),
                transient=False,
            )
            self._rich.__enter__()
            self._task = self._rich.add_task(self.description, total=self.total, completed=self.done, info="")
        return self

    def advance(self, n: int = 1, **info: Any) -> None:
        self.done += n
        self._info.update(info)
        text = "  ".join(f"{k}={_fmt(v)}" for k, v in self._info.items())
        if self._rich is not None:
            self._rich.update(self._task, advance=n, info=text)
        elif not self.quiet:
            now = time.perf_counter()
            if self.done >= self.total or now - self._last_print >= 15.0:
                self._last_print = now
                print(f"{self.description}: {self.done}/{self.total} ({self.eta()})  {text}", flush=True)

    def eta(self) -> str:
        elapsed = time.perf_counter() - self._t0
        made = self.done - self.start_done
        if made <= 0:
            return "eta ?"
        remaining = elapsed / made * (self.total - self.done)
        return f"{elapsed:.0f}s elapsed, eta {remaining:.0f}s"

    def __exit__(self, *exc: Any) -> None:
        if self._rich is not None:
            self._rich.__exit__(*exc)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)
