"""Settings: the contract's variables, their defaults, and per-provider resolution."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from dashtam_pipeline.errors import ConfigurationError
from dashtam_pipeline.provider_settings import setting_names
from dashtam_pipeline.registry import PROVIDER_REGISTRY
from dashtam_pipeline.settings import DEFAULT_FRED_SERIES, DEFAULT_SYMBOLS, Settings, load_settings

CONTRACT = Path(__file__).parents[2] / "shared" / "CONTRACT.md"
KEY = "dGhpcyBpcyBhIHRlc3Qga2V5IG9mIDMyIGJ5dGVzISE="  # a valid Fernet key (32 bytes)


def test_defaults(data_dir: Path) -> None:
    s = load_settings()
    assert s.dashtam_symbols == DEFAULT_SYMBOLS and "BRK.B" in s.dashtam_symbols
    assert s.dashtam_fred_series == DEFAULT_FRED_SERIES
    assert s.news_queries == DEFAULT_SYMBOLS
    assert s.dashtam_rights_profile == "basic" and not s.options_allowed
    assert s.state_url == f"sqlite:///{data_dir / 'state.db'}"
    assert s.chase_inbox == data_dir / "inbox" / "chase"
    fmp = s.provider("fmp")
    assert fmp.base_url == "https://financialmodelingprep.com/stable"
    assert fmp.timeout_seconds == 5 and fmp.breaker_threshold == 3
    assert s.provider("newsapi").timeout_seconds == 3
    assert s.missing_settings("fmp") == ["FMP_API_KEY"]
    assert s.missing_settings("chase_file") == []


def test_environment_and_dotenv(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("FRED_API_KEY=from-dotenv\nDASHTAM_SYMBOLS=aapl, brk-b\n")
    monkeypatch.setenv("FRED_TIMEOUT_SECONDS", "2.5")
    monkeypatch.setenv("FMP_BASE_URL", "http://127.0.0.1:9/prefix/stable")
    s = Settings()
    assert s.provider("fred").secret("fred_api_key") == "from-dotenv"
    assert s.provider("fred").timeout_seconds == 2.5
    assert s.provider("fmp").base_url == "http://127.0.0.1:9/prefix/stable"
    assert s.dashtam_symbols == ("AAPL", "BRK.B")  # canonical spelling
    assert "from-dotenv" not in repr(s)


def test_bad_rights_profile_is_a_clear_error(data_dir: Path) -> None:
    with pytest.raises(
        ConfigurationError, match="DASHTAM_RIGHTS_PROFILE must be one of basic, pro, got gold"
    ):
        load_settings(dashtam_rights_profile="gold")


@pytest.mark.skipif(not CONTRACT.exists(), reason="../shared/CONTRACT.md not beside the clone")
def test_every_contract_variable_is_a_setting() -> None:
    text = CONTRACT.read_text()
    environment = text.split("## Environment")[1].split("## The warehouse")[0]
    names = set(re.findall(r"`([A-Z][A-Z0-9_]+)`", environment))
    names -= {"DAGSTER_HOME"}  # read by Dagster itself; Settings resolves its default
    providers = {variable for meta in PROVIDER_REGISTRY
                 for variable in setting_names(meta).values()}
    for name in sorted(names):
        assert name.lower() in Settings.model_fields or name in providers, (
            f"{name} (CONTRACT.md) is neither a setting nor a provider's variable")
    for prefix in ("FMP", "POLYGON", "FRED", "NEWS", "ALPACA", "SCHWAB"):
        for knob in ("TIMEOUT_SECONDS", "CIRCUIT_BREAKER_THRESHOLD", "CIRCUIT_BREAKER_TIMEOUT"):
            assert f"{prefix}_{knob}" in providers


def test_executor_settings_refuse_bad_values_in_one_sentence(data_dir: Path) -> None:
    assert load_settings().dashtam_executor == "multiprocess"
    with pytest.raises(ConfigurationError,
                       match="DASHTAM_EXECUTOR must be one of multiprocess, celery, got dask"):
        load_settings(dashtam_executor="dask")
    with pytest.raises(ConfigurationError, match="DASHTAM_EXECUTOR=celery needs "
                                                 "DASHTAM_CELERY_BROKER"):
        load_settings(dashtam_executor="celery")
    bad_broker = "DASHTAM_CELERY_BROKER must be a Celery URL"
    with pytest.raises(ConfigurationError, match=bad_broker) as bad:
        load_settings(dashtam_executor="celery", dashtam_celery_broker="ftp://u:hunter2@h/")
    assert "hunter2" not in str(bad.value)
    with pytest.raises(ConfigurationError, match="DASHTAM_CELERY_VISIBILITY_TIMEOUT must be"):
        load_settings(dashtam_celery_visibility_timeout="0")
    s = load_settings(dashtam_executor="Celery", dashtam_celery_broker="redis://h:6379/0")
    assert (s.dashtam_executor, s.celery_backend) == ("celery", "redis://h:6379/0")
    s = load_settings(dashtam_executor="celery", dashtam_celery_broker="amqp://h//",
                      dashtam_celery_backend="redis://r:6379/1")
    assert s.celery_backend == "redis://r:6379/1"


def test_the_executor_follows_the_setting(data_dir: Path) -> None:
    import importlib

    from dashtam_pipeline.executors import STEP_PRELOAD, celery_config, job_executor

    assert job_executor(load_settings()).name == "multiprocess"
    for module in STEP_PRELOAD:  # what the forkserver imports before it forks steps
        importlib.import_module(module)
    settings = load_settings(dashtam_executor="celery", dashtam_celery_broker="redis://h:6379/0",
                             dashtam_celery_visibility_timeout="40")
    assert job_executor(settings).name == "celery"
    config = celery_config(settings)
    assert config["broker"] == config["backend"] == "redis://h:6379/0"
    assert config["config_source"]["broker_transport_options"]["visibility_timeout"] == 40


@pytest.mark.parametrize("value", ["yesterday", "1899-01-01", "2024-02-30"])
def test_a_history_start_that_is_not_a_date_is_a_clear_error(data_dir: Path, value: str) -> None:
    with pytest.raises(ConfigurationError, match="DASHTAM_HISTORY_START must be a date"):
        load_settings(dashtam_history_start=value)


def test_replacing_a_setting_keeps_every_other_one(data_dir: Path) -> None:
    """A resource's config replaces one setting; the rest, secrets and their checks
    included, come through unchanged (a Celery broker URL is a secret whose scheme the
    check reads)."""
    base = load_settings(dashtam_executor="celery",
                         dashtam_celery_broker="redis://:pw@127.0.0.1:6379/0",
                         dashtam_secret_key=KEY, dashtam_symbols="AAPL,MSFT")
    replaced = base.replaced(dashtam_dlq_max_replays=7, fmp_timeout_seconds=2)
    assert replaced.dashtam_dlq_max_replays == 7
    assert replaced.provider("fmp").timeout_seconds == 2
    assert replaced.celery_backend == "redis://:pw@127.0.0.1:6379/0"
    assert replaced.dashtam_secret_key == base.dashtam_secret_key
    assert replaced.dashtam_symbols == ("AAPL", "MSFT")
    assert base.provider("fmp").timeout_seconds == 5  # the original is untouched
    with pytest.raises(ConfigurationError, match="NOT_A_KNOB is not a setting"):
        base.replaced(not_a_knob=1)
