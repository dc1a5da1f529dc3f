"""Settings: defaults < TOML file < environment < flags, and precise errors for bad values."""
from __future__ import annotations

import dataclasses

import pytest

from am.config import ConfigError, Settings, load_settings


def test_defaults_are_safe_for_one_machine(tmp_path):
    s = load_settings(env={})
    assert s.host == "127.0.0.1"
    assert s.broker_url == ""           # embedded broker
    assert s.allocation_ttl_s == 600    # 10 minutes
    assert s.max_lease_s == 7 * 24 * 3600
    assert s.am_urn == "urn:publicid:IDN+geni-am:localhost+authority+am"
    s2 = s.replace(state_dir=str(tmp_path))
    assert s2.effective_database_url == f"sqlite:///{tmp_path}/geni-am.sqlite"


def test_precedence_file_env_flags(tmp_path):
    cfg = tmp_path / "am.toml"
    cfg.write_text('[am]\nport = 6000\nhost = "0.0.0.0"\ntrusted_proxies = ["127.0.0.2"]\n'
                   '[logging]\nlevel = "info"\n')
    s = load_settings(cfg, env={"GENI_AM_PORT": "7000", "GENI_AM_OPERATORS": "urn:a, urn:b"},
                      overrides={"host": "127.0.0.9", "broker_url": None})
    assert s.port == 7000                 # env beats file
    assert s.host == "127.0.0.9"          # flag beats file
    assert s.trusted_proxies == ("127.0.0.2",)
    assert s.operators == ("urn:a", "urn:b")
    assert s.broker_url == ""             # a None flag does not override


@pytest.mark.parametrize("text, fragment", [
    ("port = 'many'\n", "'port'"),
    ("colour = 'blue'\n", "unknown setting 'colour'"),
    ("port = \n", "config file"),
])
def test_bad_file_values_name_the_key(tmp_path, text, fragment):
    cfg = tmp_path / "am.toml"
    cfg.write_text(text)
    with pytest.raises(ConfigError, match=fragment):
        load_settings(cfg, env={})


def test_bad_env_value_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="allocation_ttl_s"):
        load_settings(env={"GENI_AM_ALLOCATION_TTL_S": "ten"})
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.toml", env={})


def test_unreadable_config_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="config file"):
        load_settings(tmp_path, env={})                     # a directory, not a file
    binary = tmp_path / "am.toml"
    binary.write_bytes(b"\xff\xfe port = 1")
    with pytest.raises(ConfigError, match="config file"):
        load_settings(binary, env={})


def test_settings_are_immutable():
    s = Settings()
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.port = 1  # type: ignore[misc]


@pytest.mark.parametrize("key, value", [
    ("start_on_provision", 5),            # not a boolean
    ("allocation_ttl_s", 0),              # zero makes every Allocate expire at once
    ("max_lease_s", -1),
    ("reaper_interval_s", "nan"),
    ("reaper_interval_s", float("inf")),  # "never" is not a period
    ("crl_refresh_s", "inf"),
    ("allocation_ttl_s", 10.5),           # a fraction for a whole number is refused, not cut
    ("port", float("inf")),
    ("max_request_bytes", True),          # a boolean is not a size
    ("trusted_proxies", 7),               # not a list
    ("host", ["a"]),                      # not text
])
def test_values_of_the_wrong_kind_or_range_are_refused(key, value):
    with pytest.raises(ConfigError, match=repr(key)):
        load_settings(env={}, overrides={key: value})


def test_zero_is_kept_where_it_means_something():
    s = load_settings(env={"GENI_AM_PORT": "0", "GENI_AM_ROUTE_SYNC_INTERVAL_S": "0"})
    assert s.port == 0 and s.route_sync_interval_s == 0.0
