"""Progress bars: drawn as usual on a terminal, rarely in a log file, detail bars not at all in a log."""

import io
import time

from tqdm import tqdm

from difflsrec.progress import LOG_REFRESH_SECONDS, progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def run_bar(make_bar, seconds: float = 0.6, steps: int = 300) -> None:
    for _ in make_bar(range(steps)):
        time.sleep(seconds / steps)


def redraws(text: str) -> int:
    return text.count("\r")


def test_a_bar_in_a_log_file_is_drawn_at_start_and_end_only():
    plain, quiet = io.StringIO(), io.StringIO()
    run_bar(lambda it: tqdm(it, file=plain, desc="plain"))
    run_bar(lambda it: progress(it, file=quiet, desc="quiet"))
    assert redraws(plain.getvalue()) >= 5  # tqdm itself redraws every 0.1 s, terminal or not
    assert 1 <= redraws(quiet.getvalue()) <= 2
    assert "300/300" in quiet.getvalue()  # the final state still reaches the log


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
