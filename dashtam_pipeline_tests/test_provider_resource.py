"""Resources carry the configuration: ``ProviderResource`` holds a provider's knobs (base
URL, timeout, breaker, tier, rate limits) and its keys (``EnvVar``s), ``StateStoreResource``
the state store, ``StorageResource`` the data directory. Unset, each is the setting in
force; set, it wins; a bad value is refused in the environment variable's sentence, saying
where it was set; a key's value never shows, only its variable's name."""

from __future__ import annotations

from pathlib import Path

import pytest
from dagster import EnvVar, asset, materialize

from dashtam_pipeline.definitions import build_definitions
from dashtam_pipeline.errors import ConfigurationError
from dashtam_pipeline.provider_settings import KNOBS
from dashtam_pipeline.registry import PROVIDER_REGISTRY, get_provider_metadata
from dashtam_pipeline.resources import (
    ProviderResource,
    StateStoreResource,
    StorageResource,
    build_resources,
    settings_from,
)


@pytest.fixture
def fmp_env(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DASHTAM_SANDBOX", "false")
    monkeypatch.setenv("FMP_API_KEY", "fmp-test-key")
    monkeypatch.setenv("FMP_BASE_URL", "http://from-env.test/stable")
    monkeypatch.delenv("FMP_TIMEOUT_SECONDS", raising=False)
    monkeypatch.delenv("FMP_LICENSE_TIER", raising=False)


def fmp_resource(**config: object) -> ProviderResource:
    """The code location's own class for FMP (with its ``fmp_api_key`` field)."""
    built = ProviderResource.for_provider(get_provider_metadata("fmp"))
    return type(built)(slug="fmp", **{**built.setting_overrides(), **config})


def test_unset_config_is_the_settings_in_force(fmp_env: None) -> None:
    client = ProviderResource(slug="fmp").client()
    assert client.settings.base_url == "http://from-env.test/stable"
    assert client.settings.timeout_seconds == 5  # the contract's FMP default
    assert client.settings.breaker_threshold == 3
    assert client.settings.tier == "free"
    assert (client.settings.requests_per_minute, client.settings.requests_per_day) == (None, 250)
    assert client.settings.secret("fmp_api_key") == "fmp-test-key"


def test_config_overrides_every_knob(fmp_env: None) -> None:
    resource = ProviderResource(
        slug="fmp", base_url="https://proxy.test/fmp", timeout_seconds=2.5,
        circuit_breaker_threshold=7, circuit_breaker_timeout=12, license_tier="starter",
        requests_per_day=9000,
    )
    settings = resource.client().settings
    assert settings.base_url == "https://proxy.test/fmp"
    assert settings.timeout_seconds == 2.5
    assert (settings.breaker_threshold, settings.breaker_timeout_seconds) == (7, 12)
    assert settings.tier == "starter"
    assert settings.requests_per_minute == 300  # the starter tier's published limit
    assert settings.requests_per_day == 9000  # the override of the tier's
    assert settings.secret("fmp_api_key") == "fmp-test-key"  # still the environment's


@pytest.mark.parametrize(
    ("config", "sentence"),
    [
        ({"base_url": "ftp://proxy.test"},
         "FMP_BASE_URL must be an http:// or https:// URL with a host, got ftp://proxy.test "
         "(the scheme is ftp) (set in the config of the provider_fmp resource)"),
        ({"timeout_seconds": -1},
         "FMP_TIMEOUT_SECONDS must be a number of seconds greater than 0, got -1.0 "
         "(set in the config of the provider_fmp resource)"),
        ({"license_tier": "gold"},
         "FMP_LICENSE_TIER must be one of free, starter, premium (Financial Modeling Prep's "
         "tiers), got gold (set in the config of the provider_fmp resource)"),
        ({"circuit_breaker_threshold": 0},
         "FMP_CIRCUIT_BREAKER_THRESHOLD must be a whole number of failures, at least 1, "
         "got 0 (set in the config of the provider_fmp resource)"),
    ],
)
def test_a_bad_override_is_one_sentence(
    fmp_env: None, config: dict[str, object], sentence: str
) -> None:
    with pytest.raises(ConfigurationError) as caught:
        ProviderResource(slug="fmp", **config).client()  # type: ignore[arg-type]
    assert str(caught.value) == sentence


def test_a_file_import_has_no_url_to_configure(data_dir: Path) -> None:
    with pytest.raises(ConfigurationError, match="provider_chase_file has no base_url"):
        ProviderResource(slug="chase_file", base_url="https://x.test").configured()


def test_keys_are_env_vars_that_show_their_name_and_reach_the_client(
    fmp_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The code location's FMP resource holds ``EnvVar("FMP_API_KEY")``: its repr (what a
    log or the UI could print) names the variable and never holds the value, and a step
    bound to it by Dagster gets the value; a run may name another variable in its config
    (``{"env": ...}``: the run's stored config then holds a name, not a key)."""
    monkeypatch.setenv("FMP_API_KEY_OTHER", "other-key")
    resource = build_resources()["provider_fmp"]
    assert isinstance(resource.fmp_api_key, EnvVar)
    assert resource.fmp_api_key == "FMP_API_KEY"
    assert "fmp-test-key" not in repr(resource)
    seen: list[str] = []

    @asset
    def uses_fmp(provider_fmp: ProviderResource) -> None:
        seen.append(provider_fmp.client().settings.secret("fmp_api_key"))

    assert materialize([uses_fmp], resources={"provider_fmp": resource}).success
    other = materialize(  # a run points at another variable, never pastes a key
        [uses_fmp], resources={"provider_fmp": resource},
        run_config={"resources": {"provider_fmp": {"config": {
            "fmp_api_key": {"env": "FMP_API_KEY_OTHER"}}}}},
    )
    assert other.success
    assert seen == ["fmp-test-key", "other-key"]
    # outside a run (the CLI builds clients from the same resources) the variable is read
    assert resource.client().settings.secret("fmp_api_key") == "fmp-test-key"


def test_an_unset_key_is_the_settings_in_force(
    fmp_env: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A key only in ``.env`` is no EnvVar (Dagster reads the process environment), and
    the client still finds it where the settings do."""
    monkeypatch.delenv("FMP_API_KEY")
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("FMP_API_KEY=from-dotenv\n")
    resource = build_resources()["provider_fmp"]
    assert resource.fmp_api_key is None
    assert resource.client().settings.secret("fmp_api_key") == "from-dotenv"


def test_the_state_store_and_storage_resources_replace_their_settings(
    data_dir: Path, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"
    state = StateStoreResource(url=f"sqlite:///{tmp_path / 'other.db'}", dlq_max_replays=5)
    settings = settings_from(StorageResource(data_dir=str(elsewhere)), state)
    assert settings.state_url == f"sqlite:///{tmp_path / 'other.db'}"
    assert settings.dashtam_dlq_max_replays == 5
    assert settings.data_dir == elsewhere.resolve()
    assert settings_from(StateStoreResource()).state_url == f"sqlite:///{data_dir / 'state.db'}"
    with pytest.raises(ConfigurationError, match=r"\(set in the config of the state resource\)$"):
        settings_from(StateStoreResource(url="mysql://db.test/x"))


def test_the_code_location_has_a_resource_per_provider_with_its_knobs_and_keys(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for meta in PROVIDER_REGISTRY:
        for name in meta.required_settings:
            monkeypatch.setenv(name.upper(), f"secret-of-{name}")
    resources = build_definitions().resources or {}
    providers = {k: v for k, v in resources.items() if k.startswith("provider_")}
    assert set(providers) == {f"provider_{meta.slug.value}" for meta in PROVIDER_REGISTRY}
    for key, resource in providers.items():
        assert isinstance(resource, ProviderResource) and key == f"provider_{resource.slug}"
        keys = get_provider_metadata(resource.slug).required_settings
        assert set(type(resource).model_fields) == {"slug", *KNOBS, *keys}
        assert all(getattr(resource, name) == name.upper() for name in keys)
        assert "secret-of-" not in repr(resource)
    assert isinstance(resources["state"], StateStoreResource)
    assert isinstance(resources["storage"], StorageResource)
