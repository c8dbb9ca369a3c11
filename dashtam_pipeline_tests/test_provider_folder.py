"""A new API-key provider on existing datasets is one new folder and no core edit.

The test writes a throwaway provider folder (metadata, client, sandbox routes) into a temp
directory, puts it on the providers' discovery path (``DASHTAM_PROVIDERS_PATH``) and, in a
fresh Python process, checks that the pipeline picked it up everywhere the core derives
from the registry: its brokerage asset and its provider source asset are in the
Definitions, it joins the quotes fallback after FMP and Polygon, its client is found, and
the sandbox answers its routes, and the compliance check finds the folder complete.

Why a subprocess: discovery runs once per process and the result is shared by every module
that read it; a separate process leaves this worker's registry untouched, so the test is
safe beside others under pytest-xdist. The layering rules of the provider folders are
checked here too, from the source (no import is executed).
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import dashtam_pipeline
from dashtam_pipeline.registry import PROVIDERS_PATH_ENV

SLUG = "throwaway"

METADATA = '''\
"""A throwaway provider written by test_provider_folder: an API-key brokerage that also
serves quotes, declared with nothing but this folder."""

from dashtam_pipeline.registry import (
    Dataset,
    ProviderAuthType,
    ProviderCapability,
    ProviderCategory,
    ProviderMetadata,
    ProviderSlug,
    RateLimit,
)

METADATA = ProviderMetadata(
    slug=ProviderSlug("throwaway"),
    display_name="Throwaway Broker",
    category=ProviderCategory.BROKERAGE,
    auth_type=ProviderAuthType.API_KEY,
    capabilities=(ProviderCapability.QUOTES, ProviderCapability.ACCOUNTS),
    required_settings=("throwaway_api_key",),
    datasets=(Dataset.QUOTES, Dataset.ACCOUNTS),
    env_prefix="THROWAWAY",
    default_base_url="https://api.throwaway.example/v1",
    default_timeout_seconds=5,
    rate_limits={"free": RateLimit(requests_per_minute=60)},
    default_tier="free",
    priority=90,
    client=f"{__name__}.client:ThrowawayClient",
    sandbox_routes=f"{__name__}.sandbox:PROVIDER",
)
'''

CLIENT = '''\
"""The throwaway provider's client: the shared base does HTTP, this only maps rows."""

import pandas as pd

from dashtam_pipeline.clients.base import FetchRequest, FetchResult, ProviderClient
from dashtam_pipeline.registry import ProviderSlug


class ThrowawayClient(ProviderClient):
    slug = ProviderSlug("throwaway")

    def fetch_quotes(self, request: FetchRequest) -> FetchResult:
        return FetchResult(pd.DataFrame(self.http.get_json("/quotes")))

    def fetch_accounts(self, request: FetchRequest) -> FetchResult:
        return FetchResult(pd.DataFrame(self.http.get_json("/accounts")))
'''

SANDBOX = '''\
"""What the built-in sandbox answers in the throwaway provider's name."""

from dashtam_pipeline.sandbox.common import json_response
from dashtam_pipeline.sandbox.routing import Provider, route


def _accounts(world, request, groups):
    return json_response([{"account_id": "****0001", "cash": 100.0}])


PROVIDER = Provider(
    slug="throwaway",
    routes=(route("GET", "/v1/accounts", _accounts),),
    error_body=lambda status, message: {"error": message},
)
'''

PROBE = '''\
import json

import httpx

from dashtam_pipeline.clients import client_class
from dashtam_pipeline.definitions import build_definitions
from dashtam_pipeline.registry import FALLBACK_ORDER, Dataset, get_provider_metadata
from dashtam_pipeline.sandbox.app import PROVIDERS, SandboxApp
from dashtam_pipeline.settings import load_settings
from dashtam_pipeline_tests.test_registry_compliance import folder_problems

settings = load_settings()
defs = build_definitions(settings)
graph = defs.resolve_asset_graph()
with httpx.Client(transport=httpx.WSGITransport(app=SandboxApp(seed=1)),
                  base_url="http://sandbox") as http:
    answer = http.get("/throwaway/v1/accounts")
print(json.dumps({
    "assets": sorted(k.to_user_string() for k in graph.get_all_asset_keys()),
    "quotes_fallback": list(FALLBACK_ORDER[Dataset.QUOTES]),
    "client": client_class("throwaway").__name__,
    "display_name": get_provider_metadata("throwaway").display_name,
    "sandbox": sorted(PROVIDERS),
    "sandbox_answer": [answer.status_code, answer.json()],
    "missing": settings.missing_settings("throwaway"),
    "problems": folder_problems(get_provider_metadata("throwaway")),
}))
'''


def write_provider(root: Path) -> Path:
    """The throwaway provider's folder under ``root``: three files and a recorded answer."""
    folder = root / SLUG
    folder.mkdir(parents=True)
    (folder / "__init__.py").write_text(METADATA)
    (folder / "client.py").write_text(CLIENT)
    (folder / "sandbox.py").write_text(SANDBOX)
    (folder / "payloads").mkdir()
    (folder / "payloads" / "accounts.json").write_text(
        '[{"account_id": "****0001", "cash": 100.0}]')
    return folder


def test_a_provider_folder_is_all_a_new_provider_takes(data_dir: Path, tmp_path: Path) -> None:
    write_provider(tmp_path / "extra_providers")
    env = {**os.environ, PROVIDERS_PATH_ENV: str(tmp_path / "extra_providers")}
    env.pop("THROWAWAY_API_KEY", None)
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(PROBE)],
        env=env, capture_output=True, text=True, timeout=300, check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert "brokerage/throwaway_accounts" in seen["assets"]
    assert "providers/throwaway" in seen["assets"]
    assert seen["quotes_fallback"] == ["fmp", "polygon", "throwaway"]
    assert seen["client"] == "ThrowawayClient"
    assert seen["display_name"] == "Throwaway Broker"
    assert "throwaway" in seen["sandbox"]
    assert seen["sandbox_answer"] == [200, [{"account_id": "****0001", "cash": 100.0}]]
    assert seen["missing"] == ["THROWAWAY_API_KEY"]  # its own variable, named by its metadata
    assert seen["problems"] == []  # the compliance test finds the folder complete


VARIABLES_PROBE = '''\
import json

from dashtam_pipeline.errors import ConfigurationError
from dashtam_pipeline.resources import build_resources
from dashtam_pipeline.settings import load_settings

provider = load_settings().provider("throwaway")
resource = build_resources()["provider_throwaway"]
try:
    load_settings(throwaway_requests_per_minute=0)
    refused = ""
except ConfigurationError as error:
    refused = str(error)
print(json.dumps({
    "key": provider.secret("throwaway_api_key"),
    "timeout": provider.timeout_seconds,
    "per_minute": provider.requests_per_minute,
    "resource_fields": sorted(type(resource).model_fields),
    "refused": refused,
}))
'''


def test_a_provider_folder_brings_its_own_variables(data_dir: Path, tmp_path: Path) -> None:
    """Its key and ``THROWAWAY_*`` knobs are read from ``.env`` like the contract's, its
    resource lists them, and a bad value is one sentence naming its variable: no edit to
    ``settings.py`` or ``resources.py``."""
    write_provider(tmp_path / "extra_providers")
    (tmp_path / ".env").write_text(
        "THROWAWAY_API_KEY=key-from-dotenv\nTHROWAWAY_TIMEOUT_SECONDS=2.5\n")
    env = {**os.environ, PROVIDERS_PATH_ENV: str(tmp_path / "extra_providers")}
    env.pop("THROWAWAY_API_KEY", None)
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(VARIABLES_PROBE)], cwd=tmp_path,
        env=env, capture_output=True, text=True, timeout=300, check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["key"] == "key-from-dotenv"
    assert seen["timeout"] == 2.5
    assert seen["per_minute"] == 60  # the free tier the metadata publishes
    assert "throwaway_api_key" in seen["resource_fields"]
    assert "license_tier" in seen["resource_fields"]
    assert seen["refused"] == ("THROWAWAY_REQUESTS_PER_MINUTE must be a whole number, at "
                               "least 1, got 0")

    env["THROWAWAY_TIMEOUT_SECONDS"] = "-1"
    bad = subprocess.run(
        [sys.executable, "-c", "from dashtam_pipeline.settings import load_settings; "
         "load_settings()"], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=300, check=False,
    )
    assert "THROWAWAY_TIMEOUT_SECONDS must be a number of seconds greater than 0, got -1" in (
        bad.stderr), bad.stderr[-2000:]


def test_without_the_folder_there_is_no_such_provider(data_dir: Path) -> None:
    from dashtam_pipeline.registry import get_all_provider_slugs

    assert SLUG not in get_all_provider_slugs()


# -- layering: registry <- providers/* <- the rest; the sandbox core knows no provider -----
PACKAGE = Path(dashtam_pipeline.__file__).parent


def _imports(path: Path) -> set[str]:
    """Every module a source file imports (``from x import y`` counts ``x`` and ``x.y``)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_the_registry_imports_no_provider() -> None:
    imported = _imports(PACKAGE / "registry.py")
    assert not {n for n in imported if n.startswith("dashtam_pipeline.")}


def test_the_sandbox_core_imports_no_provider() -> None:
    for path in sorted((PACKAGE / "sandbox").rglob("*.py")):
        offending = {n for n in _imports(path) if n.startswith("dashtam_pipeline.providers")}
        assert not offending, f"{path.name} imports {sorted(offending)}"


def test_no_client_imports_the_sandbox() -> None:
    for path in sorted((PACKAGE / "providers").glob("*/client.py")):
        offending = {n for n in _imports(path) if n.startswith("dashtam_pipeline.sandbox")}
        assert not offending, f"{path.parent.name}/client.py imports {sorted(offending)}"


def test_no_provider_imports_another() -> None:
    for folder in sorted(p for p in (PACKAGE / "providers").iterdir() if p.is_dir()):
        if folder.name.startswith("_"):
            continue
        for path in folder.glob("*.py"):
            others = {
                n.split(".")[2] for n in _imports(path)
                if n.startswith("dashtam_pipeline.providers.") and n.count(".") >= 2
            } - {folder.name}
            assert not others, f"{folder.name}/{path.name} imports providers {sorted(others)}"
