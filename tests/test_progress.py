"""Progress bars: drawn as usual on a terminal, rarely in a log file, detail bars not at all in a log."""

import io
import sys
import time

from tqdm import tqdm

from difflsrec.progress import LOG_REFRESH_SECONDS, progress, say


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def run_bar(make_bar, seconds: float = 0.6, steps: int = 300) -> None:
    for _ in make_bar(range(steps)):
        time.sleep(seconds / steps)


def redraws(text: str) -> int:
    return text.count("\r")


def test_a_bar_in_a_log_file_is_a_line_at_start_and_at_end():
    plain, quiet = io.StringIO(), io.StringIO()
    run_bar(lambda it: tqdm(it, file=plain, desc="plain"))
    run_bar(lambda it: progress(it, file=quiet, desc="quiet"))
    assert redraws(plain.getvalue()) >= 5  # tqdm itself redraws every 0.1 s, terminal or not
    lines = quiet.getvalue().splitlines(keepends=True)
    assert redraws(quiet.getvalue()) == 0 and all(line.endswith("\n") for line in lines)
    assert 1 <= len(lines) <= 2 and lines[0].startswith("quiet:")
    assert "300/300" in lines[-1]  # the final state still reaches the log


def test_lines_between_bars_do_not_redraw_them_in_a_log(capsys):
    bar = progress(range(3), file=sys.stderr, desc="outer", leave=False)
    for _ in bar:
        say("epoch line")
    out, err = capsys.readouterr()
    assert out.splitlines() == ["epoch line"] * 3
    assert err.count("outer:") == 1 and "\r" not in err  # drawn once when created; its clear is dropped


def test_log_bars_refresh_once_a_minute_and_keep_a_slower_setting():
    bar = progress(range(3), file=io.StringIO())
    assert bar.mininterval == LOG_REFRESH_SECONDS and bar.maxinterval >= LOG_REFRESH_SECONDS
    bar.close()
    slower = progress(range(3), file=io.StringIO(), mininterval=300.0)
    assert slower.mininterval == 300.0
    slower.close()


def test_a_detail_bar_is_left_out_of_a_log_file():
    out = io.StringIO()
    run_bar(lambda it: progress(it, file=out, detail=True, desc="epoch 1"), seconds=0.2)
    assert out.getvalue() == ""


def test_a_terminal_gets_tqdm_unchanged():
    out = Terminal()
    run_bar(lambda it: progress(it, file=out, detail=True, desc="epoch 1"))
    assert redraws(out.getvalue()) >= 5
    bar = progress(range(3), file=Terminal())
    assert bar.mininterval == tqdm(range(3), file=Terminal()).mininterval
    bar.close()


def test_a_disabled_bar_stays_disabled():
    out = Terminal()
    run_bar(lambda it: progress(it, file=out, disable=True), seconds=0.1)
    assert out.getvalue() == ""
