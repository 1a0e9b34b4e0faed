"""Reading the day's picks as a file or URL hands them over (`core.picks`)."""

from __future__ import annotations

import pytest

from core.picks import MAX_PICKS, parse_picks


def test_a_list_or_an_object_of_symbols_and_scored_objects() -> None:
    assert parse_picks(["005930", {"symbol": "000660", "score": 0.8}]) == (("005930", 1.0), ("000660", 0.8))
    analysed = {"picks": [{"stock_code": "035420", "stock_name": "NAVER", "reason": "..."}], "model": "r1"}
    assert parse_picks(analysed) == (("035420", 1.0),)
    assert parse_picks([" 0088m0 ", "005930", {"symbol": "005930", "score": 0.5}]) == (
        ("0088M0", 1.0), ("005930", 0.5))


@pytest.mark.parametrize(("document", "words"), [
    ({}, "non-empty list"),
    ([], "non-empty list"),
    ("005930", "non-empty list"),
    ([5930], "pick 0"),
    (["005930", "SAMSUNG"], "pick 1: a six-character KRX code"),
    ([{"symbol": "005930", "score": 2}], "score must be a number from 0 to 1"),
    ([{"symbol": "005930", "score": True}], "score must be a number from 0 to 1"),
    (["005930"] * (MAX_PICKS + 1), "at most"),
])
def test_anything_else_is_refused_with_one_line(document: object, words: str) -> None:
    with pytest.raises(ValueError, match=words) as refused:
        parse_picks(document)
    assert "\n" not in str(refused.value)
