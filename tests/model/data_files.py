"""Small interaction files written for the data-layer tests."""

from __future__ import annotations

import gzip
import json
from pathlib import Path


def write_lines(path: Path, lines: list[str], gz: bool = False) -> Path:
    text = "".join(line + "\n" for line in lines).encode()
    path.write_bytes(gzip.compress(text) if gz else text)
    return path


def amazon2023_line(user: str, parent_asin: str, ms: int, asin: str | None = None) -> str:
    return json.dumps(
        {
            "rating": 4.0,
            "title": "Nice, really",
            "text": "Works as described.\nWould buy again",
            "images": [],
            "asin": asin or parent_asin + "-v",
            "parent_asin": parent_asin,
            "user_id": user,
            "timestamp": ms,
            "helpful_vote": 2,
            "verified_purchase": True,
        }
    )


def tab_rows(rows: list[tuple[str, str, int]]) -> list[str]:
    """``user item rating timestamp`` lines, MovieLens u.data style (rating fixed to 3)."""
    return [f"{u}\t{i}\t3\t{t}" for u, i, t in rows]
