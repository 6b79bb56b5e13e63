"""Reader defects, one section each: byte-order marks, non-UTF-8 lines, broken gzip, millisecond precision,
milliseconds formats holding seconds, column overrides outside plain csv, archives, Amazon 2018 ratings CSVs."""

from __future__ import annotations

import bz2
import gzip
import json
import logging
import lzma
import zipfile

import numpy as np
import pytest

from model.data.formats import MalformedDataError, ReadOptions, detect_format, head, read_interactions
from model.data.prepare import PrepareOptions, prepare
from tests.model.data_files import amazon2023_line, tab_rows, write_lines

BOM = b"\xef\xbb\xbf"
MS = 1_700_000_000_000  # a whole second, in milliseconds
S = 1_400_000_000


def read(path, **options):
    table, reports = read_interactions([path], ReadOptions(**options))
    users = [table.user_vocab[c] for c in table.users]
    items = [table.item_vocab[c] for c in table.items]
    return users, items, table.times.tolist(), reports[0]


def write_bytes(path, data: bytes, gz: bool = False):
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def text(lines: list[str]) -> bytes:
    return "".join(line + "\n" for line in lines).encode()


# ---- 1. a UTF-8 byte-order mark is skipped at the start of the file, plain or gzip -------------------
@pytest.mark.parametrize("gz", [False, True])
def test_bom_amazon2023_jsonl_is_detected_and_its_first_line_read(tmp_path, gz):
    lines = [amazon2023_line(f"U{k}", "P1", MS + k) for k in range(3)]
    path = write_bytes(tmp_path / "r.jsonl", BOM + text(lines), gz)
    assert detect_format(path) == "amazon2023"
    users, _, _, report = read(path)
    assert users == ["U0", "U1", "U2"] and report.malformed == 0


def test_bom_csv_header_names_the_columns(tmp_path):
    path = write_bytes(tmp_path / "r.csv", BOM + text(["userid,itemid,rating,ts", f"u1,i1,5,{S}"]))
    assert detect_format(path) == "csv"
    assert read(path)[:2] == (["u1"], ["i1"])
    renamed = write_bytes(tmp_path / "c.csv", BOM + text(["customer,product,when", f"c1,p1,{S}"]))
    assert read(renamed, format="csv", user_col="customer", item_col="product", time_col="when")[:2] == (["c1"], ["p1"])


@pytest.mark.parametrize("gz", [False, True])
def test_bom_makes_no_phantom_user_in_u_data_and_only_the_first_is_skipped(tmp_path, gz):
    data = BOM + text(tab_rows([("30", "8", S)])) + BOM + text(tab_rows([("17", "8", S + 1)]))
    path = write_bytes(tmp_path / "u.data", data, gz)
    assert detect_format(path) == "movielens-tab"
    users, _, _, _ = read(path)
    assert users == ["30", "\ufeff17"]  # a BOM inside the file is data, left alone


# ---- 2. a line that is not UTF-8 is a malformed line, never altered -----------------------------------
LATIN1 = ["userid,itemid,rating,timestamp"] + [f"u{k},i1,5,{S + k}" for k in range(8)]


@pytest.mark.parametrize("gz", [False, True])
def test_latin1_ids_are_malformed_lines_not_merged(tmp_path, gz):
    data = text(LATIN1) + "José,i1,5,1400000100\nJosè,i1,5,1400000100\n".encode("latin-1")
    path = write_bytes(tmp_path / "r.csv", data, gz)
    assert detect_format(path) == "csv"  # sniffing does not choke on the bytes either
    users, _, _, report = read(path, max_malformed=0.5)
    assert users == [f"u{k}" for k in range(8)]  # no 'Jos\ufffd'
    assert report.lines == 10 and report.malformed == 2
    assert report.examples == [(10, "not UTF-8 (byte 0xe9 at column 4)"), (11, "not UTF-8 (byte 0xe8 at column 4)")]
    with pytest.raises(MalformedDataError, match=r"line 10: not UTF-8 \(byte 0xe9 at column 4\).*re-encode"):
        read(path)  # 20% > the default 1%


def test_non_utf8_first_line_does_not_break_sniffing(tmp_path):
    path = write_bytes(tmp_path / "u.data", "Andr\xe9\t1\t3\t1400000000\n".encode("latin-1") + text(tab_rows([("2", "1", S)] * 3)))
    assert detect_format(path) == "movielens-tab"
    _, _, _, report = read(path, max_malformed=0.5)
    assert report.examples == [(1, "not UTF-8 (byte 0xe9 at column 5)")]


def test_non_utf8_header_is_an_error_naming_the_line(tmp_path):
    path = write_bytes(tmp_path / "r.csv", "user,item,tim\xe9\n".encode("latin-1") + text([f"u,i,{S}"]))
    with pytest.raises(ValueError, match=r"line 1 \(the header\) is not UTF-8"):
        read(path, format="csv")


# ---- 3. a truncated or corrupt gzip is a ValueError naming the file and the last line read ------------
def _gz_lines(n: int = 2000) -> bytes:
    return gzip.compress(text([amazon2023_line(f"U{k}", f"P{k % 7}", MS + k) for k in range(n)]))


def test_truncated_gzip_is_a_value_error_not_eof_error(tmp_path):
    data = _gz_lines()
    path = tmp_path / "r.jsonl.gz"
    path.write_bytes(data[: len(data) // 2])
    assert detect_format(path) == "amazon2023"  # the first lines are intact
    with pytest.raises(ValueError, match=r"r\.jsonl\.gz: unreadable gzip after line \d+: Compressed file ended.*interrupted download"):
        read(path)
    head_only = tmp_path / "h.jsonl.gz"
    head_only.write_bytes(data[:5])  # not even the gzip header
    with pytest.raises(ValueError, match="h.jsonl.gz: unreadable gzip at its start"):
        detect_format(head_only)


@pytest.mark.parametrize("where", [0.02, 0.5])
def test_corrupt_gzip_is_a_value_error_not_zlib_error(tmp_path, where):
    data = bytearray(_gz_lines())
    at = int(len(data) * where)
    data[at : at + 16] = bytes(b ^ 0x5A for b in data[at : at + 16])
    path = tmp_path / "r.jsonl.gz"
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"r\.jsonl\.gz: unreadable gzip (after line \d+|at its start): .*\(a corrupt file\?\)"):
        read(path, format="amazon2023")


# ---- 4. milliseconds keep their sub-second part through ordering and dedup ----------------------------
def test_sub_second_times_order_and_deduplicate(tmp_path):
    # file order P1, P3, P2, P3; time order P1, P2 (.100), P3 (.500), P3 (.900): the P3s are 400 ms apart
    stamps = [("P1", MS), ("P3", MS + 50_900), ("P2", MS + 50_100), ("P3", MS + 50_500)]
    path = write_lines(tmp_path / "r.jsonl", [amazon2023_line("U", item, ms) for item, ms in stamps])
    _, _, times, _ = read(path)
    assert times == [MS / 1000, MS / 1000 + 50.9, MS / 1000 + 50.1, MS / 1000 + 50.5]
    dataset = prepare(path, PrepareOptions(kcore=0), cache_dir=tmp_path / "cache", use_cache=False)
    seq = dataset.sequences
    assert [seq.item_ids[i] for i in seq.items] == ["P1", "P2", "P3", "P3"]
    assert seq.times.tolist() == [MS // 1000] + [MS // 1000 + 50] * 3  # whole seconds in the prepared data


def test_whole_second_times_are_unchanged(tmp_path):
    path = write_lines(tmp_path / "u.data", tab_rows([("1", "10", 881250949), ("1", "11", 2**31 + 7)]))
    table, _ = read_interactions([path])
    assert table.times.dtype == np.float64
    assert table.times.tolist() == [881250949, 2**31 + 7]
    assert read(write_lines(tmp_path / "w.jsonl", [amazon2023_line("U", "P", MS + 5000)]))[2] == [MS // 1000 + 5]


def test_head_shows_sub_seconds(tmp_path):
    path = write_lines(tmp_path / "r.jsonl", [amazon2023_line("U0", "P", MS + 123), amazon2023_line("U1", "P", MS)])
    _, rows, report = head(path, 2)
    assert rows == [("U0", "P", 1_700_000_000.123), ("U1", "P", 1_700_000_000)]
    assert isinstance(rows[1][2], int) and report.time_unit == "ms"


# ---- 5. a milliseconds format holding seconds is read as seconds, with a warning ----------------------
def test_amazon2023_csv_in_seconds_is_read_as_seconds(tmp_path, caplog):
    path = write_lines(tmp_path / "secs.csv", ["user_id,parent_asin,rating,timestamp", f"U,P2,5,{S + 60}", f"U,P1,5,{S}"])
    with caplog.at_level(logging.WARNING):
        _, _, times, report = read(path)
    assert times == [S + 60, S] and report.time_unit == "s"
    assert "secs.csv: timestamps look like seconds, not the amazon2023-csv format's milliseconds" in caplog.text
    assert read(path, time_unit="ms")[2] == [(S + 60) / 1000, S / 1000]  # an explicit unit still wins


def test_amazon2023_jsonl_in_seconds_is_read_as_seconds(tmp_path, caplog):
    path = write_lines(tmp_path / "secs.jsonl", [amazon2023_line("U", "P", S), amazon2023_line("U", "Q", S + 1)])
    with caplog.at_level(logging.WARNING):
        _, _, times, report = read(path)
    assert times == [S, S + 1] and report.time_unit == "s" and "look like seconds" in caplog.text


def test_headerless_amazon2023_ratings_in_milliseconds_are_read_as_milliseconds(tmp_path, caplog):
    """An Amazon 2023 ratings CSV saved without its header looks like the headerless 2014/2018 ratings CSV
    (seconds): its millisecond times were read as seconds (year ~52,000) without a word."""
    path = write_lines(tmp_path / "noheader.csv", [f"U,P2,5.0,{MS + 60_000}", f"U,P1,5.0,{MS}"])
    with caplog.at_level(logging.WARNING):
        _, _, times, report = read(path)
    assert times == [MS // 1000 + 60, MS // 1000] and report.time_unit == "ms"
    assert "noheader.csv: timestamps look like milliseconds, not the amazon-ratings format's seconds" in caplog.text
    assert read(path, time_unit="s")[2] == [MS + 60_000, MS]  # an explicit unit still wins


# ---- 6. column overrides apply to every format with named fields, and are refused by the others -------
def test_item_col_on_amazon2023_jsonl_reads_that_key(tmp_path):
    path = write_lines(tmp_path / "r.jsonl", [amazon2023_line("U1", "P1", MS, asin="A1"), amazon2023_line("U2", "P1", MS, asin="A2")])
    assert read(path, item_col="asin")[1] == ["A1", "A2"]
    assert read(path, user_col="asin", item_col="user_id")[:2] == (["A1", "A2"], ["U1", "U2"])
    with pytest.raises(MalformedDataError, match="missing when"):
        read(path, time_col="when")


def test_user_col_on_amazon2023_csv_reads_that_column(tmp_path):
    path = write_lines(tmp_path / "r.csv", ["user_id,parent_asin,asin,rating,timestamp", f"U1,P1,A1,5,{MS}"])
    assert read(path, user_col="parent_asin", item_col="asin")[:2] == (["P1"], ["A1"])
    with pytest.raises(ValueError, match="has no 'customer' column"):
        read(path, user_col="customer")


def test_overrides_on_amazon2018_json_read_those_keys(tmp_path):
    line = json.dumps({"reviewerID": "R1", "asin": "B1", "unixReviewTime": S, "edited": S + 9, "style": "x"})
    path = write_lines(tmp_path / "r.json", [line])
    assert read(path, time_col="edited")[2] == [S + 9]


@pytest.mark.parametrize(
    "name, lines",
    [("u.data", tab_rows([("1", "2", S)])), ("ratings.dat", [f"1::2::3::{S}"]), ("ratings.csv", [f"A1,B2,3.0,{S}"])],
)
def test_overrides_on_a_headerless_file_are_refused_before_reading(tmp_path, name, lines):
    path = write_lines(tmp_path / name, lines)
    with pytest.raises(ValueError, match=r"user_col \(--user-col\) cannot apply to a .* file: it has no header"):
        read(path, user_col="user")


# ---- 7. archives other than gzip are named, not sniffed ----------------------------------------------
def _zip(path):
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("ml-100k/u.data", "1\t2\t3\t4\n")


@pytest.mark.parametrize(
    "kind, write",
    [
        ("zip", _zip),
        ("bz2", lambda p: p.write_bytes(bz2.compress(b"1\t2\t3\t4\n"))),
        ("xz", lambda p: p.write_bytes(lzma.compress(b"1\t2\t3\t4\n"))),
        ("zstd", lambda p: p.write_bytes(b"\x28\xb5\x2f\xfd" + bytes(range(40)))),
    ],
)
def test_an_archive_is_named_and_the_user_told_to_extract_it(tmp_path, kind, write):
    path = tmp_path / "data.bin"
    write(path)
    with pytest.raises(ValueError, match=rf"data\.bin is a {kind} archive.*extract it"):
        detect_format(path)
    with pytest.raises(ValueError, match=rf"is a {kind} archive"):
        read(path, format="movielens-tab")


# ---- 8. Amazon 2018 ratings-only CSVs put the item first ---------------------------------------------
ROWS_2018 = ["0143026860,A1V6B6TNIC10QE,1.0,1424304000", "0143026860,A2F5GHSXFQ0W6J,4.0,1418860800", "B00021DJ32,A1V6B6TNIC10QE,5.0,1420848000"]
ROWS_2014 = ["A39HTATAQ9V7YF,0205616461,5.0,1369699200", "A3JM6GV9MNOF9X,0558925278,3.0,1355443200"]


def test_amazon2018_ratings_csv_is_read_item_first(tmp_path):
    path = write_lines(tmp_path / "All_Beauty.csv", ROWS_2018)
    assert detect_format(path) == "amazon2018-ratings"
    users, items, times, report = read(path)
    assert users == ["A1V6B6TNIC10QE", "A2F5GHSXFQ0W6J", "A1V6B6TNIC10QE"]
    assert items == ["0143026860", "0143026860", "B00021DJ32"]
    assert times == [1424304000, 1418860800, 1420848000] and report.time_unit == "s"


def test_amazon2014_ratings_csv_stays_user_first(tmp_path):
    path = write_lines(tmp_path / "ratings_Beauty.csv", ROWS_2014)
    assert detect_format(path) == "amazon-ratings"
    assert read(path)[:2] == (["A39HTATAQ9V7YF", "A3JM6GV9MNOF9X"], ["0205616461", "0558925278"])
    assert read(path, format="amazon2014-ratings")[0] == ["A39HTATAQ9V7YF", "A3JM6GV9MNOF9X"]
    assert read(path, format="amazon2018-ratings")[0] == ["0205616461", "0558925278"]  # forced: taken as item first
