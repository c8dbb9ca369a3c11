"""``ProviderResource`` carries a provider's non-secret knobs as config (shown in the
launchpad, overridable per run); unset, they are the settings in force. An override is
refused in one sentence, like the environment variable it replaces. Keys are never config."""

from __future__ import annotations

from pathlib import Path

import pytest

from dashtam_pipeline.definitions import build_definitions
from dashtam_pipeline.errors import ConfigurationError
from dashtam_pipeline.resources import ProviderResource


@pytest.fixture
def fmp_env(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DASHTAM_SANDBOX", "false")
    monkeypatch.setenv("FMP_API_KEY", "fmp-test-key")
    monkeypatch.setenv("FMP_BASE_URL", "http://from-env.test/stable")
    monkeypatch.delenv("FMP_TIMEOUT_SECONDS", raising=False)


def test_unset_config_is_the_settings_in_force(fmp_env: None) -> None:
    client = ProviderResource(slug="fmp").client()
    assert client.settings.base_url == "http://from-env.test/stable"
    assert client.settings.timeout_seconds == 5  # the contract's FMP default
    assert client.settings.secret("fmp_api_key") == "fmp-test-key"


def test_config_overrides_the_settings(fmp_env: None) -> None:
    resource = ProviderResource(slug="fmp", base_url="https://proxy.test/fmp", timeout_seconds=2.5)
    client = resource.client()
    assert client.settings.base_url == "https://proxy.test/fmp"
    assert client.settings.timeout_seconds == 2.5
    assert client.settings.secret("fmp_api_key") == "fmp-test-key"  # still the environment's


@pytest.mark.parametrize(
    ("config", "sentence"),
    [
        ({"base_url": "ftp://proxy.test"},
         "FMP_BASE_URL must be an http:// or https:// URL with a host, got ftp://proxy.test "
         "(the scheme is ftp) (set in the config of the provider_fmp resource)"),
        ({"timeout_seconds": -1},
         "FMP_TIMEOUT_SECONDS must be a number of seconds greater than 0, got -1.0 "
         "(set in the config of the provider_fmp resource)"),
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


def test_the_code_location_has_one_resource_per_provider_with_no_secret(data_dir: Path) -> None:
    resources = build_definitions().resources or {}
    providers = {k: v for k, v in resources.items() if k.startswith("provider_")}
    assert providers and all(isinstance(v, ProviderResource) for v in providers.values())
    for key, resource in providers.items():
        assert key == f"provider_{resource.slug}"
        assert set(type(resource).model_fields) == {"slug", "base_url", "timeout_seconds"}
