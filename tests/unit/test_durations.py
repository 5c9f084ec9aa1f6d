from datetime import timedelta

import pytest

from ai_incident_operator.durations import parse_duration


@pytest.mark.parametrize(
    ("text", "expected"),
    [("90s", timedelta(seconds=90)), ("10m", timedelta(minutes=10)), ("1h30m", timedelta(minutes=90)),
     ("168h", timedelta(days=7)), ("7d", timedelta(days=7)), ("250ms", timedelta(milliseconds=250))],
)  # fmt: skip
def test_parse(text, expected):
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "10", "m10", "10 m", "1h-5m", "ten minutes"])
def test_rejects(text):
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)
