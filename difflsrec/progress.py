"""Progress bars that suit a terminal and a log file alike.

On a terminal tqdm redraws its line in place several times a second. Written to a file or a pipe
(``make demo > log``, CI, ``nohup``) every redraw is appended instead, glued to the next one by carriage
returns: one training left a megabyte of bars in its log. So a bar whose stream is not a terminal is
drawn at most once a minute, each time as a line of its own (long work still shows that it moves), and a
bar that only details its parent's step (the batches of one epoch, whose summary line is printed anyway)
is left out. :func:`say` prints a line between the bars.
"""

from __future__ import annotations

import sys

from tqdm.auto import tqdm

#: seconds between two lines of a bar written to a file or a pipe
LOG_REFRESH_SECONDS = 60.0


def progress(iterable=None, *, detail: bool = False, **kwargs) -> tqdm:
    """``tqdm(iterable, **kwargs)``, quiet in logs. ``detail``: the bar details one step of an outer bar or
    loop that reports on its own (drawn on a terminal only)."""
    stream = kwargs.get("file") or sys.stderr
    if not _is_interactive(stream):
        if detail:
            kwargs["disable"] = True
        else:
            # tqdm's monitor thread forces a redraw after maxinterval, so both bounds move
            kwargs["mininterval"] = max(kwargs.get("mininterval", 0.1), LOG_REFRESH_SECONDS)
            kwargs["maxinterval"] = max(kwargs.get("maxinterval", 10.0), LOG_REFRESH_SECONDS)
            kwargs["file"] = _Lines(stream)
    return tqdm(iterable, **kwargs)


def say(message: str) -> None:
    """Print a line to stdout: above the bars on a terminal (they are redrawn below it), as a plain line
    in a log (where redrawing the bars after every line would repeat them)."""
    if _is_interactive(sys.stderr):
        tqdm.write(message)
    else:
        print(message, flush=True)


class _Lines:
    """A text stream for tqdm that turns its in-place redraws into whole lines and drops its clears."""

    def __init__(self, stream) -> None:
        self.stream = stream

    def write(self, text: str) -> None:
        line = text.strip("\r\n").rstrip()
        if line:
            self.stream.write(line + "\n")

    def flush(self) -> None:
        self.stream.flush()


def _is_interactive(stream) -> bool:
    if "ipykernel" in sys.modules:  # a notebook: tqdm.auto draws a widget, updated in place
        return True
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False
