"""A dependency-free progress bar on stderr for job waits.

On a terminal it redraws one line (``\\r``); elsewhere (logs, CI) it prints a line only every
``NON_TTY_STEP`` of progress and on state changes, so logs stay short.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

from ._models import JobStatus

BAR_WIDTH = 30
#: Fraction of progress between two printed lines when the stream is not a terminal.
NON_TTY_STEP = 0.1


def format_bar(fraction: float, width: int = BAR_WIDTH) -> str:
    """``[########------]  57%`` for ``fraction`` clipped to [0, 1]."""
    fraction = min(max(fraction, 0.0), 1.0)
    filled = round(fraction * width)
    return f"[{'#' * filled}{'-' * (width - filled)}] {fraction * 100:3.0f}%"


def format_duration(seconds: float) -> str:
    """``01:02`` or ``1:02:03``."""
    seconds = int(max(seconds, 0))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


def format_job_line(job: JobStatus, elapsed_s: float, width: int = BAR_WIDTH) -> str:
    """One progress line for a job: bar, steps, state, elapsed time and the job id."""
    steps = ""
    if job.steps_done is not None and job.steps_total:
        steps = f"  {job.steps_done}/{job.steps_total} steps"
    return f"{job.id} {format_bar(job.progress, width)}{steps}  {job.state}  {format_duration(elapsed_s)}"


class ProgressBar:
    """Shows a job's progress on ``stream`` (stderr by default); call :meth:`update` per status, then :meth:`close`."""

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        width: int = BAR_WIDTH,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.width = width
        self._clock = clock
        self._start = clock()
        self._tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._last_line = ""
        self._last_printed: tuple[str, float] | None = None
        self._open = False

    def update(self, job: JobStatus) -> None:
        """Draw the job's current progress."""
        line = format_job_line(job, self._clock() - self._start, self.width)
        if self._tty:
            pad = " " * max(len(self._last_line) - len(line), 0)
            self.stream.write(f"\r{line}{pad}")
            self.stream.flush()
            self._open = True
        else:
            key = (str(job.state), job.progress)
            previous = self._last_printed
            moved = previous is None or key[0] != previous[0] or key[1] - previous[1] >= NON_TTY_STEP or job.done
            if moved and key != previous:
                self.stream.write(line + "\n")
                self.stream.flush()
                self._last_printed = key
        self._last_line = line

    def close(self) -> None:
        """End the bar's line (terminal only)."""
        if self._tty and self._open:
            self.stream.write("\n")
            self.stream.flush()
            self._open = False
