"""Durations and numbers in configuration (helixstream/_durations.py)."""
from __future__ import annotations

import pytest

import helixstream as hs
from helixstream._durations import check_number, parse_duration, seconds_from_text


@pytest.mark.parametrize(
    "text, seconds",
    [
        ("250ms", 0.25),
        ("1.5s", 1.5),
        ("2m", 120.0),
        ("1m30s", 90.0),
        ("1.5h", 5400.0),
        ("300us", 300e-6),
        ("300µs", 300e-6),  # U+00B5 MICRO SIGN, as Go writes it
        ("300μs", 300e-6),  # U+03BC GREEK SMALL LETTER MU, also accepted by Go
        ("1e3ms", 1.0),
        ("1h2m3.5s", 3723.5),
        ("2h45m", 9900.0),
        ("100ns", 100e-9),
        (".5s", 0.5),
        ("1.s", 1.0),
        ("+2s", 2.0),
        ("0", 0.0),
        ("-0s", 0.0),
        ("0.5", 0.5),  # a bare number is seconds
        ("1e3", 1000.0),
        (" 250ms ", 0.25),
        ("250 ms", 0.25),
        ("1m 30s", 90.0),
    ],
)
def test_go_style_durations(text, seconds):
    assert seconds_from_text(text) == pytest.approx(seconds)
    assert parse_duration(text, "max_delay") == pytest.approx(seconds)


@pytest.mark.parametrize(
    "text",
    ["", "soon", "1 minute", "1d", "ms", "1m30", "s1", "1.2.3s", "1e", "1es", "5 s s", "nan", "inf",
     "1_000ms", "--1s", "1s-1s", "1M", "1m30s!"],
)
def test_malformed_durations_name_the_field_and_the_accepted_forms(text):
    with pytest.raises(hs.ConfigError) as info:
        parse_duration(text, "progress_interval")
    message = str(info.value)
    assert message.startswith("'progress_interval' must be a duration")
    assert "'1m30s'" in message and f"(got {text!r})" in message


@pytest.mark.parametrize("text", ["-1s", "-1", "-1m30s", "-0.5h"])
def test_a_negative_duration_says_it_must_be_at_least_zero(text):
    with pytest.raises(hs.ConfigError, match=rf"^'max_delay' must be >= 0 \(got {text!r}\)$"):
        parse_duration(text, "max_delay")


@pytest.mark.parametrize("value", [-1, -0.5, float("nan"), float("inf")])
def test_negative_and_non_finite_numbers_are_refused(value):
    with pytest.raises(hs.ConfigError, match="'max_delay' must be"):
        parse_duration(value, "max_delay")


def test_an_overflowing_duration_is_refused():
    with pytest.raises(hs.ConfigError, match="finite"):
        parse_duration("1e400s", "max_delay")


def test_none_only_where_allowed():
    assert parse_duration(None, "max_delay", allow_none=True) is None
    with pytest.raises(hs.ConfigError):
        parse_duration(None, "max_delay")


def test_booleans_are_not_durations():
    with pytest.raises(hs.ConfigError, match="got True"):
        parse_duration(True, "max_delay")


def test_stream_config_takes_go_durations():
    config = hs.StreamConfig(progress_interval="1m30s", max_delay="300us", close_timeout="1e3ms")
    assert config.progress_interval == 90.0
    assert config.max_delay == pytest.approx(300e-6)
    assert config.close_timeout == 1.0


def test_a_number_in_quotes_says_it_is_a_string():
    with pytest.raises(hs.ConfigError) as info:
        hs.StreamConfig(rate_limit="50")  # type: ignore[arg-type]
    message = str(info.value)
    assert message.startswith("'rate_limit' must be tokens per second >= 0")
    assert "not a string" in message and "(got '50')" in message and "without quotes" in message


def test_a_word_in_place_of_a_number_says_it_is_a_string_too():
    with pytest.raises(hs.ConfigError, match=r"'rate_limit' must be .* not a string \(got 'fast'\)$"):
        check_number("fast", "rate_limit", what="tokens per second")


def test_check_number_messages_for_numbers_are_unchanged():
    with pytest.raises(hs.ConfigError, match=r"^'burst' must be an int >= 0 \(got 1\.5\)$"):
        check_number(1.5, "burst", integer=True)
    with pytest.raises(hs.ConfigError, match=r"^'queue_size' must be an int >= 1 \(got 0\)$"):
        check_number(0, "queue_size", integer=True, minimum=1)
