"""Progress bars that suit a terminal and a log file alike.

On a terminal tqdm redraws its line in place several times a second. Written to a file or a pipe
(``make demo > log``, CI, ``nohup``) every redraw is appended instead: one training left a megabyte of bars
in its log. So a bar whose stream is not a terminal redraws at most once a minute (long work still shows
that it moves), and a bar that only details its parent's step (the batches of one epoch, whose summary
line is printed anyway) is left out.
"""

from __future__ import annotations

import sys

from tqdm.auto import tqdm

#: seconds between two redraws of a bar written to a file or a pipe
LOG_REFRESH_SECONDS = 60.0


def progress(iterable=None, *, detail: bool = False, **kwargs) -> tqdm:
    """``tqdm(iterable, **kwargs)``, quiet in logs. ``detail``: the bar details one step of an outer bar or
    loop that reports on its own (drawn on a terminal only)."""
    if not _is_interactive(kwargs.get("file") or sys.stderr):
        if detail:
            kwargs["disable"] = True
        else:
            # tqdm's monitor thread forces a redraw after maxinterval, so both bounds move
            kwargs["mininterval"] = max(kwargs.get("mininterval", 0.1), LOG_REFRESH_SECONDS)
            kwargs["maxinterval"] = max(kwargs.get("maxinterval", 10.0), LOG_REFRESH_SECONDS)
    return tqdm(iterable, **kwargs)


def _is_interactive(stream) -> bool:
    if "ipykernel" in sys.modules:  # a notebook: tqdm.auto draws a widget, updated in place
        return True
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False
