"""Interaction-file readers: format detection and a streaming, malformed-line-tolerant parser.

Every reader yields ``(user, item, timestamp)`` per line; :func:`read_interactions` interns the raw ids
into integer codes as it goes, so memory grows with the interactions kept, never with the file (gzip is
decompressed on the fly, line by line).

Files are UTF-8 (a byte-order mark at the start is skipped). A line that is not valid UTF-8 is a malformed
line like any other, never altered: two ids that differ only in their undecodable bytes must not merge.
Timestamps come out as float64 epoch seconds; millisecond files keep their sub-second part, so ordering and
duplicate detection see the file's full precision.

Formats (``ReadOptions.format``; ``"auto"`` detects from the first lines, gzip from the magic bytes):

* ``amazon2023``      Amazon Reviews 2023 ``*.jsonl[.gz]``: ``user_id``, ``parent_asin``/``asin``, ``timestamp`` (ms)
* ``amazon2023-csv``  Amazon Reviews 2023 rating-only CSV ``user_id,parent_asin,rating,timestamp`` (ms)
* ``amazon2018``      Amazon 2014/2018 reviews (JSON or python-dict lines): ``reviewerID``, ``asin``,
  ``unixReviewTime`` (s); alias ``amazon2014``
* ``amazon-ratings``  Amazon 2014 ratings-only CSV without header ``user,item,rating,timestamp`` (s)
* ``amazon2018-ratings`` Amazon 2018 ratings-only CSV without header ``item,user,rating,timestamp`` (s), item first
* ``movielens-tab``   MovieLens ``u.data``: ``user<TAB>item<TAB>rating<TAB>timestamp`` (s)
* ``movielens-dat``   MovieLens ``ratings.dat``: ``user::item::rating::timestamp`` (s)
* ``csv``             delimited file with a header naming user, item and timestamp columns (comma, tab or
  semicolon; RecBole-style ``name:type`` headers accepted); timestamps in ms when they look like ms.

``user_col`` / ``item_col`` / ``time_col`` name the columns of a file with a header (``csv``,
``amazon2023-csv``) or the keys of JSON lines (``amazon2023``, ``amazon2018``); the headerless formats have
fixed columns and refuse them.
"""

from __future__ import annotations

import ast
import csv
import gzip
import io
import json
import logging
import math
import zlib
from array import array
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import asdict, dataclass, field
from itertools import islice
from pathlib import Path
from typing import Literal

import numpy as np

from difflsrec.progress import progress

log = logging.getLogger(__name__)

FORMATS = (
    "amazon2023", "amazon2023-csv", "amazon2018", "amazon-ratings", "amazon2018-ratings", "movielens-tab",
    "movielens-dat", "csv",
)
ALIASES = {"amazon2014": "amazon2018", "amazon2014-ratings": "amazon-ratings"}
MS_FORMATS = {"amazon2023", "amazon2023-csv"}
SECONDS_FORMATS = {"amazon2018", "amazon-ratings", "amazon2018-ratings", "movielens-tab", "movielens-dat"}
HEADERLESS_FORMATS = {"amazon-ratings", "amazon2018-ratings", "movielens-tab", "movielens-dat"}

USER_COLUMNS = ("user", "user_id", "userid", "reviewerid")
ITEM_COLUMNS = ("item", "item_id", "itemid", "movieid", "asin", "parent_asin")
TIME_COLUMNS = ("timestamp", "time", "ts", "unixreviewtime")

# Timestamps at or above this are milliseconds: 1e11 s is the year 5138, 1e11 ms is 1973.
MS_THRESHOLD = 10**11
MAX_TIMESTAMP = 10**15  # far beyond any ms epoch; keeps int64 arithmetic safe
MAX_EXAMPLES = 10
SNIFF_LINES = 20
BOM = b"\xef\xbb\xbf"
# compressed or archive formats this loader does not open: (magic bytes, name)
ARCHIVES = ((b"PK\x03\x04", "zip"), (b"BZh", "bz2"), (b"\xfd7zXZ\x00", "xz"), (b"\x28\xb5\x2f\xfd", "zstd"))
GZIP_ERRORS = (EOFError, gzip.BadGzipFile, zlib.error)


class MalformedDataError(ValueError):
    """Too many lines of an input file could not be parsed."""


class BadLine(Exception):
    """One line could not be parsed; the message is the reason shown in the report."""


@dataclass(frozen=True)
class ReadOptions:
    format: str = "auto"
    item_key: Literal["parent_asin", "asin"] = "parent_asin"  # Amazon 2023 only (item_col, when given, wins)
    user_col: str | None = None  # header column (csv, amazon2023-csv) or JSON key (amazon2023, amazon2018)
    item_col: str | None = None
    time_col: str | None = None
    time_unit: Literal["auto", "s", "ms"] = "auto"  # "auto": the format's convention
    max_malformed: float = 0.01  # fraction of data lines allowed to be malformed

    def __post_init__(self):
        # fail when the options are given, not halfway through reading a file
        known_format(self.format)
        if self.item_key not in ("parent_asin", "asin"):
            raise ValueError(f"item_key must be 'parent_asin' or 'asin', got {self.item_key!r}")
        if self.time_unit not in ("auto", "s", "ms"):
            raise ValueError(f"time_unit must be 'auto', 's' or 'ms', got {self.time_unit!r}")
        if not 0 <= self.max_malformed <= 1:
            raise ValueError(f"max_malformed must be in [0, 1], got {self.max_malformed!r}")


@dataclass
class ReadReport:
    """What happened while reading one file (JSON-safe via :meth:`to_dict`)."""

    path: str
    format: str
    lines: int = 0  # data lines seen (blank lines and the header excluded)
    malformed: int = 0
    examples: list[tuple[int, str]] = field(default_factory=list)  # (line number, reason), first few
    time_unit: str = "s"

    @property
    def malformed_fraction(self) -> float:
        return self.malformed / self.lines if self.lines else 0.0

    def add_bad(self, line_no: int, reason: str) -> None:
        self.malformed += 1
        if len(self.examples) < MAX_EXAMPLES:
            self.examples.append((line_no, reason))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["examples"] = [list(e) for e in self.examples]
        d["malformed_fraction"] = self.malformed_fraction
        return d


@dataclass
class Interactions:
    """Raw interactions in file order, ids interned to integer codes (code -> raw id via the vocab)."""

    users: np.ndarray  # (N,) int64 codes into user_vocab
    items: np.ndarray  # (N,) int64 codes into item_vocab
    times: np.ndarray  # (N,) float64 epoch seconds (a millisecond file's sub-second part kept)
    user_vocab: list[str]
    item_vocab: list[str]


# ---- opening and detection ------------------------------------------------------------------------
def open_binary(path: Path) -> tuple[io.BufferedReader, io.BufferedIOBase]:
    """(raw file, decompressed stream positioned after a UTF-8 byte-order mark, if the file starts with one).

    Gzip is recognised by its magic bytes, whatever the name; other archives (zip, bz2, xz, zstd) are refused
    with a ValueError saying what the file is. Readers turn gzip's own errors into :func:`gzip_error`.
    """
    raw = open(path, "rb")
    try:
        magic = raw.peek(8)[:8]
        for signature, kind in ARCHIVES:
            if magic.startswith(signature):
                raise ValueError(
                    f"{path} is a {kind} archive, not an interaction file: extract it and pass the file inside "
                    "(gzip files are read directly, without extracting)"
                )
        stream = gzip.GzipFile(fileobj=raw) if magic[:2] == b"\x1f\x8b" else raw
        try:
            if stream.peek(len(BOM))[: len(BOM)] == BOM:
                stream.read(len(BOM))
        except GZIP_ERRORS as err:
            raise gzip_error(path, stream, 0, err) from None
    except BaseException:
        raw.close()
        raise
    return raw, stream


def gzip_error(path: Path, stream: io.BufferedIOBase, line_no: int, err: Exception) -> Exception:
    """What to raise for gzip's EOFError (a truncated file, for which click would print just "Aborted."),
    zlib.error or BadGzipFile (corrupt data): a ValueError naming the file and the last line read."""
    if not isinstance(stream, gzip.GzipFile):
        return err
    hint = "an interrupted download?" if isinstance(err, EOFError) else "a corrupt file?"
    where = f"after line {line_no}" if line_no else "at its start"
    return ValueError(f"{path}: unreadable gzip {where}: {err} ({hint})")


def not_utf8(line: bytes) -> str:
    """The malformed-line reason for a line that is not UTF-8: the first bad byte and its column."""
    try:
        line.decode("utf-8")
    except UnicodeDecodeError as err:
        column = len(line[: err.start].decode("utf-8")) + 1
        return f"not UTF-8 (byte 0x{line[err.start]:02x} at column {column})"
    return "not UTF-8"


def decode_line(line: bytes) -> str:
    """The line as text; :class:`BadLine` (never a silent replacement) when it is not UTF-8."""
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError:
        raise BadLine(not_utf8(line)) from None


def first_lines(path: Path, n: int = SNIFF_LINES) -> list[str]:
    """The first n non-blank lines, line ends removed; undecodable bytes replaced (for sniffing only)."""
    path = Path(path)
    raw, stream = open_binary(path)
    lines: list[str] = []
    line_no = 0
    with raw:
        try:
            for line_no, line in enumerate(stream, start=1):
                text = line.decode("utf-8", errors="replace")
                if text.strip():
                    lines.append(text.rstrip("\r\n"))
                    if len(lines) == n:
                        break
        except GZIP_ERRORS as err:
            raise gzip_error(path, stream, line_no, err) from None
    if lines and "\r" in lines[0]:
        # bytes are split on LF only: a file with bare-CR line ends (classic Mac) reads as one line
        raise ValueError(f"{path}: its lines end with a bare CR (\\r), not LF or CRLF; convert the line ends to LF")
    return lines


def detect_format(path: Path) -> str:
    """Guess the format from the first non-blank lines; raise ValueError when nothing fits."""
    lines = first_lines(Path(path))
    if not lines:
        raise ValueError(f"{path}: empty file, cannot detect its format")
    head = lines[0].lstrip()
    if head.startswith("{"):
        return _detect_json(path, lines)
    if _mostly(lambda ln: len(ln.split("::")) == 4, lines):
        return "movielens-dat"
    delimiter = sniff_delimiter(lines[0])
    header = _normalise_header(_split(lines[0], delimiter))
    if {"user_id", "parent_asin", "timestamp"} <= set(header):
        return "amazon2023-csv"
    if _header_columns(header) is not None:
        return "csv"
    if _mostly(lambda ln: _looks_like_rating_row(_split(ln, delimiter)), lines):
        first = _split(lines[0], delimiter)
        if len(first) == 4 and not any(_is_number(f) for f in first[2:]):
            # a header whose names no loader knows: reading on would take it for one malformed line and the
            # columns by position, in the unit of whichever headerless format matched (ms read as s)
            raise ValueError(
                f"{path}: its first line {lines[0][:200]!r} is a header naming no user, item and timestamp columns "
                "this loader knows; pass format='csv' with user_col, item_col and time_col (or the format of a "
                f"headerless file, one of {FORMATS})"
            )
        if delimiter == "\t":
            return "movielens-tab"
        if delimiter == ",":
            # 2014 files put the user first, 2018 files the item: tell them apart by the reviewer ids' shape
            if _mostly(lambda ln: _item_first(_split(ln, delimiter)), lines):
                return "amazon2018-ratings"
            return "amazon-ratings"
    raise ValueError(
        f"{path}: cannot detect the format from its first line {lines[0][:200]!r}; pass format= one of {FORMATS} "
        "(a csv needs a header naming user, item and timestamp columns, or user_col/item_col/time_col)"
    )


def known_format(fmt: str) -> str:
    """``fmt`` with aliases resolved: "auto" or one of :data:`FORMATS`; ValueError for anything else."""
    fmt = ALIASES.get(fmt, fmt)
    if fmt != "auto" and fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; expected 'auto' or one of {FORMATS + tuple(ALIASES)}")
    return fmt


def resolve_format(path: Path, fmt: str = "auto") -> str:
    fmt = known_format(fmt)
    return detect_format(path) if fmt == "auto" else fmt


def _mostly(predicate: Callable[[str], bool], lines: list[str]) -> bool:
    """True for a strict majority of the sniffed lines: one malformed line must not defeat detection."""
    return 2 * sum(map(predicate, lines)) > len(lines)


def _detect_json(path: Path, lines: list[str]) -> str:
    for line in lines:
        try:
            obj = _parse_object(line, allow_python=True)
        except BadLine:
            continue
        if "parent_asin" in obj or "user_id" in obj:
            return "amazon2023"
        if "reviewerID" in obj:
            return "amazon2018"
        raise ValueError(
            f"{path}: JSON lines without user_id/parent_asin (Amazon 2023) or reviewerID (Amazon 2014/2018)"
        )
    raise ValueError(f"{path}: starts with '{{' but its first lines are neither JSON nor python dict literals")


def sniff_delimiter(line: str) -> str:
    counts = {d: line.count(d) for d in ("\t", ",", ";")}
    return max(counts, key=counts.get)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _looks_like_rating_row(fields: list[str]) -> bool:
    """Headerless ``user, item, rating, timestamp``: a small numeric rating and an integer timestamp."""
    if len(fields) != 4:
        return False
    try:
        rating = float(fields[2])
        int(fields[3])
    except ValueError:
        return False
    return 0 <= rating <= 10


def _reviewer_id(text: str) -> bool:
    """An Amazon reviewer id as in the 2014/2018 files ('A' then 11+ upper-case letters and digits); product
    ids (ASINs) are 10 characters and start with a digit (books) or 'B'."""
    return len(text) >= 12 and text[0] == "A" and text.isalnum() and text.isupper()


def _item_first(fields: list[str]) -> bool:
    """A headerless Amazon 2018 ratings row: ``item,user,rating,timestamp``."""
    return len(fields) == 4 and _reviewer_id(fields[1].strip()) and not _reviewer_id(fields[0].strip())


# ---- line parsers ---------------------------------------------------------------------------------
LineParser = Callable[[str], tuple[str, str, int]]


_OVERRIDES = (("user_col", "--user-col"), ("item_col", "--item-col"), ("time_col", "--time-col"))


def check_overrides(fmt: str, options: ReadOptions) -> None:
    """ValueError when column overrides are given for a headerless format, whose columns are fixed."""
    given = [f"{name} ({flag})" for name, flag in _OVERRIDES if getattr(options, name)]
    if given and fmt in HEADERLESS_FORMATS:
        raise ValueError(
            f"{', '.join(given)} cannot apply to a {fmt} file: it has no header and its columns are fixed. "
            "They name the columns of a file with a header (formats csv, amazon2023-csv) or the keys of JSON lines "
            "(amazon2023, amazon2018); for a headerless file in another column order, add a header line and pass "
            "format='csv' (--format csv)"
        )


def make_parser(fmt: str, options: ReadOptions, header: tuple[str, list[str]] | None) -> LineParser:
    """A function ``line -> (user, item, raw timestamp)`` raising :class:`BadLine` on a malformed line.

    ``user_col`` / ``item_col`` / ``time_col`` are the keys read from JSON lines and the columns read from a
    header; ``item_col`` wins over ``item_key``. Headerless formats refuse them (:func:`check_overrides`).
    """
    check_overrides(fmt, options)
    if fmt == "amazon2023":
        user, item, stamp = _keys(options, "user_id", options.item_key, "timestamp")
        return _json_parser(user, item, stamp, allow_python=False)
    if fmt == "amazon2018":
        # 2014 files are python dict literals (single quotes), hence the literal_eval fallback
        return _json_parser(*_keys(options, "reviewerID", "asin", "unixReviewTime"), allow_python=True)
    if fmt == "movielens-tab":
        return _positional_parser("\t")
    if fmt == "movielens-dat":
        return _positional_parser("::")
    if fmt == "amazon-ratings":
        return _positional_parser(",")
    if fmt == "amazon2018-ratings":
        return _positional_parser(",", item_first=True)
    if header is None:
        raise ValueError(f"format {fmt} needs a header line, and the file has none")
    return _header_parser(fmt, options, *header)


def _keys(options: ReadOptions, user: str, item: str, time: str) -> tuple[str, str, str]:
    """The format's default keys or columns, each replaced by its override when one is given."""
    return options.user_col or user, options.item_col or item, options.time_col or time


def _json_parser(user_key: str, item_key: str, time_key: str, allow_python: bool) -> LineParser:
    def parse(line: str) -> tuple[str, str, int]:
        obj = _parse_object(line, allow_python)
        return _id_field(obj, user_key), _id_field(obj, item_key), parse_timestamp(obj.get(time_key), time_key)

    return parse


def _parse_object(line: str, allow_python: bool) -> dict:
    try:
        obj = json.loads(line)
    except ValueError:
        if not allow_python:
            raise BadLine("invalid JSON") from None
        try:
            obj = ast.literal_eval(line.strip())
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            raise BadLine("neither JSON nor a python dict literal") from None
    if not isinstance(obj, dict):
        raise BadLine("not an object")
    return obj


def _id_field(obj: dict, key: str) -> str:
    value = obj.get(key)
    if value is None or isinstance(value, (dict, list, bool)) or str(value).strip() == "":
        raise BadLine(f"missing {key}")
    return str(value)


def parse_timestamp(value: object, name: str = "timestamp") -> int:
    """Integer or numeric-string timestamp -> int (unit untouched); BadLine otherwise."""
    number = _number(value, name)
    if not -MAX_TIMESTAMP <= number <= MAX_TIMESTAMP:
        raise BadLine(f"{name} out of range {value!r:.30}")
    return number


def _number(value: object, name: str) -> int:
    if isinstance(value, str):
        try:
            return int(value)  # the common case first: int() also accepts surrounding whitespace
        except ValueError:
            try:
                number = float(value)
            except ValueError:
                raise BadLine(f"non-numeric {name} {value.strip()[:30]!r}") from None
            if math.isfinite(number):
                return int(number)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return int(value)
    if value is None:
        raise BadLine(f"missing {name}")
    raise BadLine(f"non-numeric {name} {str(value)[:30]!r}")


def _positional_parser(delimiter: str, item_first: bool = False) -> LineParser:
    u, i = (1, 0) if item_first else (0, 1)

    def parse(line: str) -> tuple[str, str, int]:
        fields = line.rstrip("\r\n").split(delimiter)
        if len(fields) != 4:
            raise BadLine(f"expected 4 {delimiter!r}-separated columns, got {len(fields)}")
        user, item = fields[u].strip(), fields[i].strip()
        if not user or not item:
            raise BadLine("empty user or item")
        return user, item, parse_timestamp(fields[3])

    return parse


def _header_parser(fmt: str, options: ReadOptions, delimiter: str, header_fields: list[str]) -> LineParser:
    header = _normalise_header(header_fields)
    if fmt == "amazon2023-csv":
        names = _normalise_header(list(_keys(options, "user_id", options.item_key, "timestamp")))
        missing = [name for name in names if name not in header]
        if missing:
            raise ValueError(f"this Amazon 2023 CSV has no {missing[0]!r} column (columns: {header})")
        cols = tuple(header.index(name) for name in names)
    else:
        cols = _header_columns(header, options.user_col, options.item_col, options.time_col)
        if cols is None:
            raise ValueError(
                f"cannot find user, item and timestamp columns in header {header}; "
                "pass user_col / item_col / time_col"
            )
    u, i, t = cols
    width = len(header)

    def parse(line: str) -> tuple[str, str, int]:
        fields = _split(line.rstrip("\r\n"), delimiter)
        if len(fields) != width:
            raise BadLine(f"expected {width} columns, got {len(fields)}")
        user, item = fields[u].strip(), fields[i].strip()
        if not user or not item:
            raise BadLine("empty user or item")
        return user, item, parse_timestamp(fields[t])

    return parse


def _split(line: str, delimiter: str) -> list[str]:
    # str.split is ~10x faster than the csv module; quoted fields (rare in rating files) take the slow path
    if '"' in line:
        return next(csv.reader([line], delimiter=delimiter))
    return line.split(delimiter)


def _normalise_header(fields: list[str]) -> list[str]:
    """Lower-case, unquoted, RecBole ``name:type`` suffix dropped."""
    return [f.strip().strip('"').split(":")[0].strip().lower() for f in fields]


def _header_columns(
    header: list[str], user_col: str | None = None, item_col: str | None = None, time_col: str | None = None
) -> tuple[int, int, int] | None:
    def find(override: str | None, candidates: tuple[str, ...]) -> int | None:
        names = _normalise_header([override]) if override else candidates
        return next((header.index(n) for n in names if n in header), None)

    cols = (find(user_col, USER_COLUMNS), find(item_col, ITEM_COLUMNS), find(time_col, TIME_COLUMNS))
    return None if None in cols else cols  # type: ignore[return-value]


# ---- streaming ------------------------------------------------------------------------------------
HEADER_FORMATS = {"amazon2023-csv", "csv"}


def iter_records(path: Path, fmt: str, options: ReadOptions, report: ReadReport) -> Iterator[tuple[str, str, int]]:
    """Yield ``(user, item, raw timestamp)`` per good line; bad lines (not UTF-8 included) go into ``report``.

    Lines are read as bytes and decoded one by one, so one undecodable line is reported, not replaced.
    """
    path = Path(path)
    raw, stream = open_binary(path)
    size = path.stat().st_size
    line_no = 0
    with raw, progress(total=size, unit="B", unit_scale=True, desc=path.name, delay=2.0, leave=False) as bar:
        lines = enumerate(stream, start=1)
        try:
            header = None
            if fmt in HEADER_FORMATS:
                for line_no, raw_line in lines:
                    try:
                        line = decode_line(raw_line)
                    except BadLine as bad:
                        raise ValueError(f"{path}: line {line_no} (the header) is {bad}") from None
                    if line.strip():
                        delimiter = sniff_delimiter(line)
                        header = (delimiter, _split(line.rstrip("\r\n"), delimiter))
                        break
            parse = make_parser(fmt, options, header)
            for line_no, raw_line in lines:
                if not raw_line.strip():  # blank: ASCII whitespace only
                    continue
                report.lines += 1
                if report.lines % 65536 == 0:
                    bar.update(raw.tell() - bar.n)  # compressed bytes consumed: a real progress for .gz too
                try:
                    # bytes.decode is strict: one bad line is reported below, and never merges two ids
                    yield parse(raw_line.decode("utf-8"))
                except BadLine as bad:
                    report.add_bad(line_no, str(bad))
                except UnicodeDecodeError:
                    report.add_bad(line_no, not_utf8(raw_line))
        except GZIP_ERRORS as err:
            raise gzip_error(path, stream, line_no, err) from None
        bar.update(size - bar.n)


def time_unit(fmt: str, options: ReadOptions, raw_times: np.ndarray, path: object = None) -> str:
    """'s' or 'ms': forced by the options, else the format's convention checked against the magnitude.

    A milliseconds format whose times look like seconds (median below :data:`MS_THRESHOLD`, i.e. before 1973
    as ms) is read as seconds, and a seconds format whose times look like milliseconds (median from
    :data:`MS_THRESHOLD` on, after the year 5000 as seconds: an Amazon 2023 ratings CSV saved without its header
    is detected as the headerless 2014/2018 one) as milliseconds, each with a warning; csv is guessed.
    """
    if options.time_unit != "auto":
        return options.time_unit
    if len(raw_times) == 0:
        return "ms" if fmt in MS_FORMATS else "s"
    looks_ms = bool(np.median(np.abs(raw_times)) >= MS_THRESHOLD)
    if fmt in SECONDS_FORMATS:
        if looks_ms:
            log.warning(
                "%s: timestamps look like milliseconds, not the %s format's seconds; read as milliseconds; "
                "pass time_unit= (--time-unit) to force",
                path or "input", fmt,
            )
        return "ms" if looks_ms else "s"
    if fmt in MS_FORMATS and not looks_ms:
        log.warning(
            "%s: timestamps look like seconds, not the %s format's milliseconds; read as seconds; "
            "pass time_unit= (--time-unit) to force",
            path or "input", fmt,
        )
    return "ms" if looks_ms else "s"


def to_seconds(raw_times: np.ndarray, unit: str) -> np.ndarray:
    """float64 epoch seconds: exact for whole seconds, and epoch milliseconds keep their sub-second part."""
    return raw_times / 1000.0 if unit == "ms" else raw_times.astype(np.float64)


def check_malformed(report: ReadReport, max_malformed: float) -> None:
    if report.malformed:
        log.warning(
            "%s: %d of %d lines malformed (%.3f%%), first: %s",
            report.path, report.malformed, report.lines, 100 * report.malformed_fraction, report.examples[:3],
        )
    if report.malformed_fraction > max_malformed:
        shown = "; ".join(f"line {n}: {why}" for n, why in report.examples)
        encoding = any(why.startswith("not UTF-8") for _, why in report.examples)
        advice = " The file must be UTF-8: re-encode it (e.g. iconv -f latin1 -t utf-8)." if encoding else ""
        raise MalformedDataError(
            f"{report.path}: {report.malformed} of {report.lines} lines malformed "
            f"({100 * report.malformed_fraction:.2f}% > {100 * max_malformed:.2f}% allowed, format {report.format}). "
            f"First: {shown}.{advice} Check format= or raise max_malformed."
        )


def read_interactions(
    paths: list[Path], options: ReadOptions = ReadOptions(), formats: list[str] | None = None
) -> tuple[Interactions, list[ReadReport]]:
    """Stream every file into one table (ids shared across files); raise MalformedDataError per file."""
    formats = formats or [resolve_format(p, options.format) for p in paths]
    for fmt in formats:
        check_overrides(fmt, options)  # before reading any file
    user_codes: dict[str, int] = {}
    item_codes: dict[str, int] = {}
    users, items, times, reports = [], [], [], []
    for path, fmt in zip(paths, formats):
        report = ReadReport(path=str(path), format=fmt)
        u_codes, i_codes, stamps = _read_one(path, fmt, options, report, user_codes, item_codes)
        check_malformed(report, options.max_malformed)
        report.time_unit = time_unit(fmt, options, stamps, path)
        users.append(u_codes)
        items.append(i_codes)
        times.append(to_seconds(stamps, report.time_unit))
        reports.append(report)
        log.info("read %s (%s): %d interactions, %d malformed lines", path, fmt, len(u_codes), report.malformed)
    table = Interactions(
        users=np.concatenate(users),
        items=np.concatenate(items),
        times=np.concatenate(times),
        user_vocab=list(user_codes),
        item_vocab=list(item_codes),
    )
    return table, reports


def _read_one(
    path: Path,
    fmt: str,
    options: ReadOptions,
    report: ReadReport,
    user_codes: dict[str, int],
    item_codes: dict[str, int],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    # Python lists of ints would cost ~36 B per entry; array('q') holds 8 B.
    u_codes, i_codes, stamps = array("q"), array("q"), array("q")
    intern_user, intern_item = user_codes.setdefault, item_codes.setdefault
    for user, item, stamp in iter_records(path, fmt, options, report):
        u_codes.append(intern_user(user, len(user_codes)))
        i_codes.append(intern_item(item, len(item_codes)))
        stamps.append(stamp)
    return _to_numpy(u_codes), _to_numpy(i_codes), _to_numpy(stamps)


def _to_numpy(values: array) -> np.ndarray:
    # a view, no copy: the numpy array keeps the array('q') buffer alive
    return np.frombuffer(values, dtype=np.int64) if len(values) else np.zeros(0, np.int64)


def head(
    path: Path, n: int = 5, options: ReadOptions = ReadOptions()
) -> tuple[str, list[tuple[str, str, int | float]], ReadReport]:
    """(format, first n parsed rows with timestamps in seconds, report of the lines read so far).

    A timestamp is an int when it is a whole second, else a float with the file's sub-second part.
    """
    fmt = resolve_format(Path(path), options.format)
    report = ReadReport(path=str(path), format=fmt)
    with closing(iter_records(Path(path), fmt, options, report)) as records:
        rows = list(islice(records, n))
    stamps = np.array([t for _, _, t in rows], dtype=np.int64)
    report.time_unit = time_unit(fmt, options, stamps, path)
    seconds = to_seconds(stamps, report.time_unit)
    return fmt, [(u, i, int(t) if t.is_integer() else float(t)) for (u, i, _), t in zip(rows, seconds.tolist())], report
