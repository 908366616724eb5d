import re

import pytest

from cmdrec.config import DataConfig, apply_overrides, from_dict, load_data_config, to_dict
from cmdrec.errors import InputError


def test_unknown_key_is_an_error_naming_it(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("processing:\n  sesion_gap_minutes: 10\n")
    with pytest.raises(InputError, match="processing.sesion_gap_minutes"):
        load_data_config(path)


def test_wrong_type_is_an_error():
    with pytest.raises(InputError, match="processing.min_session_length: expected int"):
        from_dict(DataConfig, {"processing": {"min_session_length": "two"}})


def test_literal_choices_are_checked():
    with pytest.raises(InputError, match="split.method"):
        from_dict(DataConfig, {"split": {"method": "by_magic"}})


def test_overrides_parse_yaml_values(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("name: x\nprocessing:\n  session_gap_minutes: 30\n")
    config = load_data_config(
        path, ["processing.session_gap_minutes=10", "processing.noise_commands=[A, B]", "split.seed=3"]
    )
    assert config.processing.session_gap_minutes == 10.0
    assert config.processing.noise_commands == ("A", "B")
    assert config.split.seed == 3


def test_override_without_equals_is_an_error():
    with pytest.raises(InputError, match="key.sub=value"):
        apply_overrides({}, ["processing.session_gap_minutes"])


def test_round_trip_through_dict():
    config = load_data_config(None, ["features.min_command_count=3"])
    assert from_dict(DataConfig, to_dict(config)) == config


def test_fractions_are_validated():
    with pytest.raises(InputError, match="below 1"):
        from_dict(DataConfig, {"split": {"valid_fraction": 0.5, "test_fraction": 0.5}})


def test_every_shipped_data_config_loads():
    from pathlib import Path

    configs = sorted((Path(__file__).resolve().parents[1] / "configs" / "data").glob("*.yaml"))
    assert configs
    for path in configs:
        assert load_data_config(path).name == path.stem


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("processing.session_gap_minutes=0", "session_gap_minutes must be above 0"),
        ("processing.session_gap_minutes=-5", "session_gap_minutes must be above 0"),
        ("processing.max_session_length=0", "max_session_length must be at least 1, or null"),
    ],
)
def test_settings_that_would_silently_lose_sessions_are_refused(override, message):
    with pytest.raises(InputError, match=message):
        load_data_config(None, [override])


@pytest.mark.parametrize("value", ["%foo", "[a, b", "{a: 1"])
def test_an_override_that_is_not_yaml_names_the_override_and_how_to_quote_it(value):
    with pytest.raises(InputError, match=rf"override 'name={re.escape(value)}': the value is not valid YAML.*quote it"):
        load_data_config(None, [f"name={value}"])
    assert load_data_config(None, [f'name="{value}"']).name == value
