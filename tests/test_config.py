"""load_config and OptimizationService."""
from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

import helixstream as hs

GUIDE = """\
optimization:
  streaming:
    enabled: true
    buffer_type: "word"           # character, word, sentence, line, paragraph, token
    progress_interval: "100ms"    # Progress update frequency
    rate_limit: 0                 # Tokens per second (0 = unlimited)
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "helix.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_the_guides_file_loads(tmp_path):
    settings = hs.load_config(write(tmp_path, GUIDE))
    assert settings.enabled is True
    cfg = settings.config
    assert cfg.buffer_type is hs.BufferType.WORD
    assert cfg.progress_interval == pytest.approx(0.1)
    assert cfg.rate_limit == 0


def test_a_mapping_loads_the_same_way():
    settings = hs.load_config(
        {"optimization": {"streaming": {"buffer_type": "sentence", "max_delay": "1.5s", "burst": 20}}}
    )
    assert settings.stream.buffer_type is hs.BufferType.SENTENCE
    assert settings.stream.max_delay == pytest.approx(1.5)
    assert settings.stream.burst == 20


def test_other_top_level_sections_are_left_alone(tmp_path):
    path = write(tmp_path, "server:\n  port: 8080\n" + GUIDE)
    assert hs.load_config(path).enabled


@pytest.mark.parametrize(
    "duration, seconds", [('"250ms"', 0.25), ('"1.5s"', 1.5), ('"2m"', 120.0), ("0.5", 0.5), ("2", 2.0)]
)
def test_durations_in_files(tmp_path, duration, seconds):
    path = write(tmp_path, f"optimization:\n  streaming:\n    progress_interval: {duration}\n")
    assert hs.load_config(path).stream.progress_interval == pytest.approx(seconds)


def test_an_unknown_key_is_an_error_naming_it_and_the_nearest_known_key(tmp_path):
    path = write(tmp_path, "optimization:\n  streaming:\n    buffer_typ: sentence\n")
    with pytest.raises(hs.ConfigError) as info:
        hs.load_config(path)
    message = str(info.value)
    assert "helix.yaml" in message and "'buffer_typ'" in message and "'buffer_type'" in message


def test_an_unknown_section_under_optimization_is_an_error():
    with pytest.raises(hs.ConfigError, match="'streeming'"):
        hs.load_config({"optimization": {"streaming": {}, "streeming": {}}})


def test_a_missing_section_is_an_error_that_shows_the_layout():
    with pytest.raises(hs.ConfigError, match="optimization.streaming"):
        hs.load_config({"optimization": {}})
    with pytest.raises(hs.ConfigError, match="'optimization'"):
        hs.load_config({"optimisation": {"streaming": {}}})


def test_an_empty_streaming_section_means_defaults():
    settings = hs.load_config({"optimization": {"streaming": None}})
    assert settings.enabled and settings.stream == hs.StreamConfig()


@pytest.mark.parametrize(
    "line, field",
    [
        ("buffer_type: bogus", "buffer_type"),
        ("progress_interval: -1", "progress_interval"),
        ("progress_interval: soon", "progress_interval"),
        ("rate_limit: -5", "rate_limit"),
        ("rate_limit: fast", "rate_limit"),
        ("token_buffer_threshold: 0", "token_buffer_threshold"),
        ("enabled: maybe", "enabled"),
        ("burst: 1.5", "burst"),
    ],
)
def test_bad_values_name_the_file_field_and_value(tmp_path, line, field):
    path = write(tmp_path, f"optimization:\n  streaming:\n    {line}\n")
    with pytest.raises(hs.ConfigError) as info:
        hs.load_config(path)
    message = str(info.value)
    assert "helix.yaml" in message and field in message
    assert line.split(": ", 1)[1] in message


def test_a_missing_file_is_a_config_error_with_its_name(tmp_path):
    with pytest.raises(hs.ConfigError, match="nothere.yaml.*not found"):
        hs.load_config(tmp_path / "nothere.yaml")


def test_a_directory_is_a_config_error(tmp_path):
    with pytest.raises(hs.ConfigError, match="directory"):
        hs.load_config(tmp_path)


def test_malformed_yaml_names_the_file_and_the_line(tmp_path):
    path = write(tmp_path, "optimization:\n  streaming:\n    buffer_type: [word\n    rate_limit: 0\n")
    with pytest.raises(hs.ConfigError) as info:
        hs.load_config(path)
    message = str(info.value)
    assert "helix.yaml" in message and "line " in message and "malformed YAML" in message


@pytest.mark.parametrize("text", ["", "just a string\n", "- a\n- list\n", "optimization: 5\n"])
def test_wrong_shapes_are_config_errors(tmp_path, text):
    with pytest.raises(hs.ConfigError, match="mapping"):
        hs.load_config(write(tmp_path, text))


def test_load_config_refuses_other_types():
    with pytest.raises(hs.ConfigError, match="path or a mapping"):
        hs.load_config(42)  # type: ignore[arg-type]


def test_yaml_is_read_safely(tmp_path):
    path = write(tmp_path, "optimization: !!python/object/apply:os.system ['echo hacked']\n")
    with pytest.raises(hs.ConfigError, match="malformed YAML"):
        hs.load_config(path)


def test_service_guide_example(tmp_path):
    svc = hs.OptimizationService(hs.load_config(write(tmp_path, GUIDE.replace('"word"', '"sentence"'))))
    output, get_result = svc.stream_enhanced(iter(["A b. ", "C d."]), None)
    assert [c.content for c in output] == ["A b. ", "C d."]
    assert get_result().full_content == "A b. C d."


def test_service_disabled_passes_chunks_through_untouched():
    svc = hs.OptimizationService({"optimization": {"streaming": {"enabled": False, "buffer_type": "sentence"}}})
    assert not svc.enabled
    mine = hs.StreamChunk("x", index=2, metadata={"m": 1})
    calls = []
    output, get_result = svc.stream_enhanced(["Hel", "lo. ", mine], calls.append)
    got = list(output)
    assert [c.content for c in got] == ["Hel", "lo. ", "x"]
    assert got[2] is mine
    assert calls == []
    assert get_result().chunk_count == 3


def test_service_takes_a_stream_config_a_mapping_or_nothing():
    assert hs.OptimizationService(hs.StreamConfig(buffer_type="line")).settings.stream.buffer_type is hs.BufferType.LINE
    assert hs.OptimizationService().enabled
    svc = hs.OptimizationService({"optimization": {"streaming": {"buffer_type": "character"}}})
    output, _ = svc.stream_enhanced(["ab"])
    assert [c.content for c in output] == ["a", "b"]


# --- a whole application's file (issue 15) -------------------------------------------
HELIXAGENT = """\
server:
  port: 8080
  host: 0.0.0.0
optimization:
  caching:
    enabled: true
    ttl: "5m"
  batching:
    max_size: 32
  streaming:
    enabled: true
    buffer_type: "sentence"
    progress_interval: "100ms"
logging:
  level: info
"""


def test_a_whole_helixagent_file_loads_and_other_sections_are_left_alone(tmp_path):
    settings = hs.load_config(write(tmp_path, HELIXAGENT))
    assert settings.enabled
    assert settings.stream.buffer_type is hs.BufferType.SENTENCE
    assert settings.stream.progress_interval == pytest.approx(0.1)


def test_other_sections_under_optimization_are_left_alone():
    settings = hs.load_config(
        {"optimization": {"caching": {"anything": [1, 2]}, "streaming": {"rate_limit": 5}}}
    )
    assert settings.stream.rate_limit == 5


@pytest.mark.parametrize("name", ["caching", "batching", "routing", "tracing", "scheduling", "sharding"])
def test_sections_with_other_names_under_optimization_are_not_taken_for_misspellings(name):
    settings = hs.load_config({"optimization": {name: {"x": 1}, "streaming": {"burst": 3}}})
    assert settings.stream.burst == 3


@pytest.mark.parametrize("name", ["streeming", "Streaming", "straeming", "streming", "streamin", "stream"])
def test_a_misspelt_streaming_section_says_what_was_expected(name):
    with pytest.raises(hs.ConfigError) as info:
        hs.load_config({"optimization": {"caching": {}, name: {"buffer_type": "word"}}})
    message = str(info.value)
    assert repr(name) in message and "'streaming'" in message
    assert "optimization.streaming" in message
    assert "caching" not in message  # someone else's section is not the problem


def test_unknown_keys_inside_streaming_stay_errors_in_a_whole_file(tmp_path):
    path = write(tmp_path, HELIXAGENT.replace("buffer_type", "bufer_type"))
    with pytest.raises(hs.ConfigError, match=r"'bufer_type' \(did you mean 'buffer_type'\?\)"):
        hs.load_config(path)


# --- duplicate keys ---------------------------------------------------------------------
def test_a_duplicate_key_is_an_error_naming_the_key_and_both_lines(tmp_path):
    path = write(
        tmp_path,
        """\
        optimization:
          streaming:
            rate_limit: 10
            buffer_type: word
            rate_limit: 20
        """,
    )
    with pytest.raises(hs.ConfigError) as info:
        hs.load_config(path)
    message = str(info.value)
    assert "helix.yaml" in message and "duplicate key 'rate_limit'" in message
    assert "lines 3 and 5" in message


def test_a_duplicate_section_is_an_error_too(tmp_path):
    path = write(tmp_path, GUIDE + "optimization:\n  streaming: {}\n")
    with pytest.raises(hs.ConfigError, match=r"duplicate key 'optimization'.*lines 1 and 7"):
        hs.load_config(path)


def test_a_duplicate_key_on_one_line_is_an_error_too(tmp_path):
    path = write(tmp_path, "optimization:\n  streaming: {rate_limit: 1, rate_limit: 2}\n")
    with pytest.raises(hs.ConfigError, match=r"duplicate key 'rate_limit' twice on line 2"):
        hs.load_config(path)


def test_the_same_key_in_different_mappings_is_fine(tmp_path):
    path = write(tmp_path, "server:\n  enabled: true\n" + GUIDE)
    assert hs.load_config(path).enabled


def test_yaml_merge_keys_may_be_overridden(tmp_path):
    path = write(
        tmp_path,
        """\
        defaults: &defaults
          buffer_type: word
          rate_limit: 5
        optimization:
          streaming:
            <<: *defaults
            rate_limit: 7
        """,
    )
    stream = hs.load_config(path).stream
    assert stream.buffer_type is hs.BufferType.WORD and stream.rate_limit == 7


# --- numbers given as strings -----------------------------------------------------------
@pytest.mark.parametrize("field", ["rate_limit", "burst", "estimated_tokens", "queue_size"])
def test_a_quoted_number_says_it_is_a_string(tmp_path, field):
    path = write(tmp_path, f'optimization:\n  streaming:\n    {field}: "50"\n')
    with pytest.raises(hs.ConfigError) as info:
        hs.load_config(path)
    message = str(info.value)
    assert f"'{field}'" in message and "'50'" in message
    assert "a string" in message and "quotes" in message


def test_durations_in_a_file_take_go_forms(tmp_path):
    path = write(tmp_path, 'optimization:\n  streaming:\n    max_delay: "1m30s"\n    close_timeout: 300us\n')
    stream = hs.load_config(path).stream
    assert stream.max_delay == pytest.approx(90.0)
    assert stream.close_timeout == pytest.approx(300e-6)


def test_a_negative_duration_in_a_file_says_it_must_not_be_negative(tmp_path):
    path = write(tmp_path, 'optimization:\n  streaming:\n    progress_interval: "-1s"\n')
    with pytest.raises(hs.ConfigError, match=r"helix\.yaml.*'progress_interval' must be >= 0 \(got '-1s'\)"):
        hs.load_config(path)


# --- language (the sentence buffer's) ---------------------------------------------


def test_language_defaults_to_english():
    assert hs.StreamConfig().language == "en"


def test_language_is_read_from_the_file_and_normalised(tmp_path):
    path = write(tmp_path, "optimization:\n  streaming:\n    buffer_type: sentence\n    language: DE\n")
    assert hs.load_config(path).stream.language == "de"


@pytest.mark.parametrize("value", ["xx", "english", "", "e", 5, None, "de-DE"])
def test_an_unknown_language_is_a_config_error_naming_the_field_and_the_codes(value):
    with pytest.raises(hs.ConfigError) as info:
        hs.StreamConfig(language=value)
    message = str(info.value)
    assert "'language'" in message and repr(value) in message and "de, el, en" in message


def test_an_unknown_language_in_a_file_names_the_file(tmp_path):
    path = write(tmp_path, "optimization:\n  streaming:\n    language: klingon\n")
    with pytest.raises(hs.ConfigError, match="helix.yaml.*'language'.*'klingon'"):
        hs.load_config(path)


def test_the_streamers_sentence_buffer_uses_the_configured_language():
    text = ["Das gilt z. B. am 31. Dezember. ", "Dann nicht."]
    units = {}
    for language in ("de", "en"):
        streamer = hs.EnhancedStreamer(hs.StreamConfig(buffer_type="sentence", language=language))
        output, _ = streamer.stream_buffered(iter(text))
        with output:
            units[language] = [chunk.content for chunk in output]
    assert units["de"] == ["Das gilt z. B. am 31. Dezember. ", "Dann nicht."]
    assert units["en"] != units["de"]  # English knows neither "z. B." nor German ordinals
