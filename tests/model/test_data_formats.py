"""Readers and format detection on small files of every supported format."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from model.data.formats import MalformedDataError, ReadOptions, detect_format, head, read_interactions
from tests.model.data_files import amazon2023_line, tab_rows, write_lines

MS = 1_700_000_000_123  # a 2023 timestamp in milliseconds
S = 1_400_000_000  # a 2014 timestamp in seconds


def read(path, **options):
    table, reports = read_interactions([path], ReadOptions(**options))
    users = [table.user_vocab[c] for c in table.users]
    items = [table.item_vocab[c] for c in table.items]
    return users, items, table.times.tolist(), reports[0]


# ---- Amazon 2023 ----------------------------------------------------------------------------------
@pytest.mark.parametrize("gz", [False, True])
def test_amazon2023_jsonl_reads_parent_asin_and_converts_ms(tmp_path, gz):
    path = write_lines(
        tmp_path / ("reviews.jsonl.gz" if gz else "reviews.jsonl"),
        [amazon2023_line("U1", "P1", MS, asin="A1"), amazon2023_line("U2", "P2", MS + 5000, asin="A2")],
        gz=gz,
    )
    users, items, times, report = read(path)
    assert users == ["U1", "U2"]
    assert items == ["P1", "P2"]
    assert times == [MS / 1000, MS / 1000 + 5]
    assert report.format == "amazon2023" and report.time_unit == "ms" and report.malformed == 0


def test_amazon2023_item_key_asin(tmp_path):
    lines = [amazon2023_line("U1", "P1", MS, asin="A1"), amazon2023_line("U1", "P1", MS, asin="A2")]
    path = write_lines(tmp_path / "r.jsonl", lines)
    _, items, _, _ = read(path, item_key="asin")
    assert items == ["A1", "A2"]


def test_amazon2023_malformed_lines_are_counted_and_reported(tmp_path, caplog):
    good = [amazon2023_line(f"U{k}", "P1", MS) for k in range(7)]
    bad = [
        "{not json",
        json.dumps({"parent_asin": "P1", "timestamp": MS}),  # no user_id
        json.dumps({"user_id": "U9", "parent_asin": "P1", "timestamp": "yesterday"}),
    ]
    path = write_lines(tmp_path / "r.jsonl", good[:3] + bad + [""] + good[3:])
    with caplog.at_level(logging.WARNING):
        users, _, _, report = read(path, max_malformed=0.5)
    assert len(users) == 7
    assert report.lines == 10  # the blank line is not a data line
    assert report.malformed == 3
    assert [n for n, _ in report.examples] == [4, 5, 6]
    reasons = " ".join(why for _, why in report.examples)
    assert "invalid JSON" in reasons and "missing user_id" in reasons and "non-numeric timestamp" in reasons
    assert "3 of 10 lines malformed" in caplog.text
    assert report.to_dict()["malformed_fraction"] == pytest.approx(0.3)


def test_too_many_malformed_lines_raise_with_line_numbers(tmp_path):
    lines = [amazon2023_line(f"U{k}", "P1", MS) for k in range(98)] + ["garbage", "{}"]
    path = write_lines(tmp_path / "r.jsonl", lines)
    read(path, max_malformed=0.02)  # 2% is allowed
    expected = r"2 of 100 lines malformed.*line 99: invalid JSON; line 100: missing user_id"
    with pytest.raises(MalformedDataError, match=expected):
        read(path, max_malformed=0.01)


def test_amazon2023_rating_only_csv(tmp_path):
    lines = ["user_id,parent_asin,rating,timestamp", f"U1,P1,5.0,{MS}", f"U2,P2,1.0,{MS + 1000}"]
    path = write_lines(tmp_path / "ratings.csv", lines)
    assert detect_format(path) == "amazon2023-csv"
    users, items, times, report = read(path)
    assert (users, items, times) == (["U1", "U2"], ["P1", "P2"], [MS / 1000, MS / 1000 + 1])
    with pytest.raises(ValueError, match="no 'asin' column"):
        read(path, item_key="asin")


# ---- Amazon 2014 / 2018 ---------------------------------------------------------------------------
@pytest.mark.parametrize("gz", [False, True])
def test_amazon2018_json_and_python_dict_lines(tmp_path, gz):
    lines = [
        json.dumps({"reviewerID": "R1", "asin": "B1", "overall": 5.0, "unixReviewTime": S, "reviewText": "ok"}),
        # 2014 style: a python dict literal, single quotes, not JSON
        str({"reviewerID": "R2", "asin": "B2", "helpful": [0, 0], "unixReviewTime": S + 60, "summary": "it's fine"}),
    ]
    path = write_lines(tmp_path / ("reviews.json.gz" if gz else "reviews.json"), lines, gz=gz)
    assert detect_format(path) == "amazon2018"
    users, items, times, report = read(path)
    assert (users, items, times) == (["R1", "R2"], ["B1", "B2"], [S, S + 60])
    assert report.time_unit == "s" and report.malformed == 0


def test_amazon_ratings_only_csv_without_header(tmp_path):
    path = write_lines(tmp_path / "ratings_Books.csv", [f"AUSER1,0000013714,5.0,{S}", f"AUSER2,0000013714,3.0,{S + 1}"])
    assert detect_format(path) == "amazon-ratings"
    users, items, times, _ = read(path)
    assert (users, items, times) == (["AUSER1", "AUSER2"], ["0000013714", "0000013714"], [S, S + 1])


# ---- MovieLens ------------------------------------------------------------------------------------
@pytest.mark.parametrize("gz", [False, True])
def test_movielens_tab_and_wrong_column_count(tmp_path, gz):
    lines = tab_rows([("196", "242", 881250949), ("186", "302", 891717742)]) + ["22\t377\t1"]
    path = write_lines(tmp_path / ("u.data.gz" if gz else "u.data"), lines, gz=gz)
    assert detect_format(path) == "movielens-tab"
    users, items, times, report = read(path, max_malformed=0.5)
    assert (users, items, times) == (["196", "186"], ["242", "302"], [881250949, 891717742])
    assert report.examples == [(3, "expected 4 '\\t'-separated columns, got 3")]


def test_movielens_dat(tmp_path):
    path = write_lines(tmp_path / "ratings.dat", ["1::1193::5::978300760", "1::661::3::978302109"])
    assert detect_format(path) == "movielens-dat"
    users, items, times, _ = read(path)
    assert (users, items, times) == (["1", "1"], ["1193", "661"], [978300760, 978302109])


# ---- generic CSV ----------------------------------------------------------------------------------
def test_csv_with_common_header_names(tmp_path):
    lines = ["userId,movieId,rating,timestamp", "1,31,2.5,1260759144", '2,"10",4.0,1260759179']
    path = write_lines(tmp_path / "ratings.csv", lines)
    assert detect_format(path) == "csv"
    users, items, times, report = read(path)
    assert (users, items, times) == (["1", "2"], ["31", "10"], [1260759144, 1260759179])
    assert report.time_unit == "s"


def test_csv_recbole_header_tab_separated_float_timestamps(tmp_path):
    lines = ["user_id:token\titem_id:token\trating:float\ttimestamp:float", "196\t242\t3\t881250949.0"]
    path = write_lines(tmp_path / "ml.inter", lines)
    assert detect_format(path) == "csv"
    assert read(path)[:3] == (["196"], ["242"], [881250949])


def test_csv_column_overrides_and_ms_detection(tmp_path):
    path = write_lines(tmp_path / "log.csv", ["customer;product;when;score", f"c1;p1;{MS};1", f"c2;p2;{MS + 2000};1"])
    with pytest.raises(ValueError, match="cannot detect"):
        detect_format(path)  # no known column names
    columns = dict(format="csv", user_col="customer", item_col="product", time_col="when")
    users, items, times, report = read(path, **columns)
    assert (users, items, times) == (["c1", "c2"], ["p1", "p2"], [MS / 1000, MS / 1000 + 2])
    assert report.time_unit == "ms"  # guessed from the magnitude
    _, _, times_forced, _ = read(path, **columns, time_unit="s")
    assert times_forced == [MS, MS + 2000]


def test_an_unknown_header_over_rating_rows_is_not_read_as_a_headerless_file(tmp_path):
    """Rows that fit the headerless `user,item,rating,timestamp` format under a header no loader knows: read
    by position, the header would pass as one malformed line and ms times as seconds. Detection refuses."""
    rows = [f"c{k},p{k},4,{MS + k}" for k in range(30)]
    path = write_lines(tmp_path / "log.csv", ["customer,product,stars,when", *rows])
    with pytest.raises(ValueError, match="is a header naming no user, item and timestamp columns"):
        detect_format(path)
    users, _, times, _ = read(path, format="csv", user_col="customer", item_col="product", time_col="when")
    assert users[:2] == ["c0", "c1"] and times[0] == MS / 1000
    headerless = write_lines(tmp_path / "ratings.csv", rows)  # the same rows without the header: Amazon's ratings csv
    assert detect_format(headerless) == "amazon-ratings"


def test_csv_override_names_a_missing_column(tmp_path):
    path = write_lines(tmp_path / "r.csv", ["user,item,timestamp", "u,i,1"])
    with pytest.raises(ValueError, match="cannot find user, item and timestamp columns"):
        read(path, time_col="when")


# ---- detection and override -----------------------------------------------------------------------
def test_gzip_is_detected_by_content_not_name(tmp_path):
    path = write_lines(tmp_path / "reviews.data", [amazon2023_line("U1", "P1", MS)], gz=True)
    assert detect_format(path) == "amazon2023"
    assert read(path)[0] == ["U1"]


def test_format_override_is_obeyed(tmp_path):
    amazon = write_lines(tmp_path / "a.jsonl", [amazon2023_line("U1", "P1", MS)] * 3)
    with pytest.raises(MalformedDataError, match="missing reviewerID"):
        read(amazon, format="amazon2018")
    literal = write_lines(tmp_path / "b.json", [str({"reviewerID": "R", "asin": "B", "unixReviewTime": S})])
    assert read(literal, format="amazon2014")[:3] == (["R"], ["B"], [S])  # alias of amazon2018
    with pytest.raises(ValueError, match="unknown format"):
        read(literal, format="parquet")


def test_undetectable_file_raises(tmp_path):
    path = write_lines(tmp_path / "x.txt", ["a\tb\tc"])
    with pytest.raises(ValueError, match="cannot detect the format"):
        detect_format(path)


def test_several_files_share_ids(tmp_path):
    first = write_lines(tmp_path / "a.data", tab_rows([("1", "10", 100)]))
    second = write_lines(tmp_path / "b.dat", ["1::11::3::200", "2::10::3::300"])
    table, reports = read_interactions([first, second])
    assert [r.format for r in reports] == ["movielens-tab", "movielens-dat"]
    assert table.users.tolist() == [0, 0, 1] and table.items.tolist() == [0, 1, 0]
    assert table.times.dtype == np.float64


def test_head_returns_first_rows_in_seconds(tmp_path):
    lines = [amazon2023_line(f"U{k}", "P", MS + k * 1000) for k in range(10)]
    path = write_lines(tmp_path / "r.jsonl.gz", lines, gz=True)
    fmt, rows, report = head(path, 2)
    assert fmt == "amazon2023"
    assert rows == [("U0", "P", MS / 1000), ("U1", "P", MS / 1000 + 1)]
    assert report.time_unit == "ms"
