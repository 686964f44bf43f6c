"""The sweep's progress bar: one rich bar for the whole sweep (member-epochs done / planned)."""

from __future__ import annotations

from typing import Any

__all__ = ["Progress"]


class Progress:
    """One rich progress bar for the whole sweep (member-epochs done / planned)."""

    def __init__(self, enabled: bool, console: Any) -> None:
        self.enabled = enabled
        self.console = console
        self._progress = None
        self._task = None

    def __enter__(self) -> Progress:
        if self.enabled:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._progress = Progress(
                TextColumn("[bold]sweep[/bold] {task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("member-epochs"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=self.console,
                transient=False,
            )
            self._progress.__enter__()
            self._task = self._progress.add_task("", total=0)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)

    def plan(self, n: int) -> None:
        if self._progress is not None:
            task = self._progress.tasks[0]
            self._progress.update(self._task, total=(task.total or 0) + n)

    def advance(self, n: int, text: str) -> None:
        if self._progress is not None:
            self._progress.update(self._task, advance=n, description=text)

    def note(self, text: str) -> None:
        if self.console is not None:
            self.console.print(f"[yellow]note:[/yellow] {text}")
