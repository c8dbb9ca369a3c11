"""Many users in the sandbox: each sandbox user's Schwab login and Alpaca keys answer with
that user's own accounts, deterministically per seed, over the real loopback server."""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import httpx
import pytest

from dashtam_pipeline.errors import ConfigurationError
from dashtam_pipeline.providers.alpaca.sandbox import sandbox_keys
from dashtam_pipeline.providers.schwab.sandbox import LOGIN_HINT, login_hint
from dashtam_pipeline.sandbox.app import SandboxApp, users_from_env
from dashtam_pipeline.sandbox.server import SandboxServer, serve
from dashtam_pipeline.settings import load_settings
from dashtam_pipeline_tests.clocks import FakeClock

pytestmark = pytest.mark.dates

NOW = dt.datetime(2025, 3, 12, 15, 0, tzinfo=dt.UTC)
CALLBACK = "https://127.0.0.1:8182"
BASIC = "Basic " + base64.b64encode(b"APPKEY:APPSECRET").decode()


@pytest.fixture
def server() -> Iterator[SandboxServer]:
    with serve(app=SandboxApp(seed=42, clock=FakeClock(NOW), users=3)) as running:
        yield running


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=30) as client:
        yield client


def schwab_login(http: httpx.Client, server: SandboxServer, hint: str | None) -> httpx.Response:
    """The authorize page, logged in as ``hint`` (no hint: whoever the sandbox defaults to)."""
    params = {"response_type": "code", "client_id": "APPKEY", "redirect_uri": CALLBACK}
    if hint is not None:
        params[LOGIN_HINT] = hint
    return http.get(server.base_url("schwab") + "/v1/oauth/authorize", params=params)


def schwab_token(http: httpx.Client, server: SandboxServer, user: int) -> str:
    """An access token of sandbox user ``user``, through the authorization-code flow."""
    redirect = schwab_login(http, server, login_hint(user))
    assert redirect.status_code == 302
    code = parse_qs(urlparse(redirect.headers["location"]).query)["code"][0]
    granted = http.post(server.base_url("schwab") + "/v1/oauth/token",
                        headers={"Authorization": BASIC},
                        data={"grant_type": "authorization_code", "code": code,
                              "redirect_uri": CALLBACK})
    assert granted.status_code == 200
    return str(granted.json()["access_token"])


def schwab_get(
    http: httpx.Client, server: SandboxServer, token: str, path: str
) -> httpx.Response:
    return http.get(server.base_url("schwab") + path,
                    headers={"Authorization": f"Bearer {token}"}, params={"fields": "positions"})


def schwab_view(http: httpx.Client, server: SandboxServer, user: int) -> dict[str, object]:
    """What user ``user`` sees: account numbers and hashes, and held symbols."""
    token = schwab_token(http, server, user)
    numbers = schwab_get(http, server, token, "/trader/v1/accounts/accountNumbers").json()
    accounts = schwab_get(http, server, token, "/trader/v1/accounts").json()
    symbols = {p["instrument"]["symbol"] for a in accounts
               for p in a["securitiesAccount"].get("positions", [])}
    return {"token": token, "numbers": {n["accountNumber"] for n in numbers},
            "hashes": {n["hashValue"] for n in numbers}, "symbols": symbols}


def test_two_schwab_users_see_disjoint_accounts_and_not_each_others(
    server: SandboxServer, http: httpx.Client
) -> None:
    first, second = schwab_view(http, server, 1), schwab_view(http, server, 2)
    assert first["numbers"] and second["numbers"]
    assert not (first["numbers"] & second["numbers"])  # type: ignore[operator]
    assert first["symbols"] != second["symbols"]
    for me, other in ((first, second), (second, first)):
        for hash_value in other["hashes"]:  # type: ignore[attr-defined]
            for suffix in ("", "/transactions?startDate=2025-01-01T00:00:00.000Z"
                           "&endDate=2025-03-01T00:00:00.000Z"):
                refused = schwab_get(http, server, str(me["token"]),
                                     f"/trader/v1/accounts/{hash_value}{suffix}")
                assert refused.status_code == 404, refused.text
        for hash_value in me["hashes"]:  # type: ignore[attr-defined]
            own = schwab_get(http, server, str(me["token"]), f"/trader/v1/accounts/{hash_value}")
            assert own.status_code == 200
    # no login (what `dashtam connect schwab` does by hand) is user 1, as before users
    default = schwab_login(http, server, None)
    assert default.status_code == 302


def test_schwab_refuses_users_beyond_the_count_and_unknown_tokens(
    server: SandboxServer, http: httpx.Client
) -> None:
    for hint in (login_hint(4), login_hint(0), "sandbox-user-x", "alice"):
        refused = schwab_login(http, server, hint)
        assert refused.status_code == 400 and refused.json()["error"] == "access_denied"
    unknown = schwab_get(http, server, "I0.not-a-token@", "/trader/v1/accounts")
    assert unknown.status_code == 401
    # a token a bigger sandbox issued to its user 3 means nothing to a sandbox of two users
    token = schwab_token(http, server, 3)
    with serve(app=SandboxApp(seed=42, clock=FakeClock(NOW), users=2)) as smaller:
        assert schwab_get(http, smaller, token, "/trader/v1/accounts").status_code == 401


def alpaca_get(
    http: httpx.Client, server: SandboxServer, keys: tuple[str, str], path: str
) -> httpx.Response:
    return http.get(server.base_url("alpaca") + path,
                    headers={"APCA-API-KEY-ID": keys[0], "APCA-API-SECRET-KEY": keys[1]})


def test_alpaca_keys_of_each_user_see_that_users_account(
    server: SandboxServer, http: httpx.Client
) -> None:
    seen = {}
    for user in (1, 2, 3):
        keys = sandbox_keys(42, user)
        account = alpaca_get(http, server, keys, "/v2/account").json()
        positions = alpaca_get(http, server, keys, "/v2/positions").json()
        seen[user] = (account["account_number"], account["id"],
                      frozenset((p["symbol"], p["qty"]) for p in positions))
    assert len({s[0] for s in seen.values()}) == 3 and len({s[1] for s in seen.values()}) == 3
    assert len({s[2] for s in seen.values()}) == 3
    # the operator's own keys in the sandbox (any other pair) are user 1's account
    legacy = alpaca_get(http, server, ("sandbox", "sandbox"), "/v2/account").json()
    assert legacy["account_number"] == seen[1][0]

    key_id, secret = sandbox_keys(42, 2)
    for refused in ((key_id, secret[:-1] + "0" if secret[-1] != "0" else secret[:-1] + "1"),
                    sandbox_keys(42, 4), sandbox_keys(7, 2), ("PKSBXjunk", "x"),
                    ("invalid", "x")):
        answer = alpaca_get(http, server, refused, "/v2/account")
        assert answer.status_code == 401 and answer.json()["code"] == 40110000
        assert refused[1] not in answer.text


def test_users_are_deterministic_per_seed(http: httpx.Client) -> None:
    def views(seed: int) -> list[tuple[object, ...]]:
        out: list[tuple[object, ...]] = []
        with serve(app=SandboxApp(seed=seed, clock=FakeClock(NOW), users=2)) as running:
            for user in (1, 2):
                keys = sandbox_keys(seed, user)
                view = schwab_view(http, running, user)
                out.append((frozenset(view["numbers"]), frozenset(view["symbols"]),  # type: ignore[arg-type]
                            alpaca_get(http, running, keys, "/v2/positions").json(),
                            alpaca_get(http, running, keys, "/v2/account/activities").json()))
        return out

    first, again, other = views(42), views(42), views(43)
    assert first == again
    assert all(a[0] != b[0] for a, b in zip(first, other, strict=True))


@pytest.mark.parametrize("value", ["0", "-2", "abc", "1.5", ""])
def test_a_bad_user_count_is_one_sentence(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("DASHTAM_SANDBOX_USERS", value)
    for read in (lambda: load_settings(), users_from_env):
        with pytest.raises(ConfigurationError) as refused:
            read()
        message = str(refused.value)
        assert message.startswith("DASHTAM_SANDBOX_USERS must be a whole number of sandbox "
                                  "users, at least 1")
        assert "\n" not in message and message.count(". ") == 0
    monkeypatch.setenv("DASHTAM_SANDBOX_USERS", "5")
    assert load_settings().dashtam_sandbox_users == 5 and users_from_env() == 5
    monkeypatch.delenv("DASHTAM_SANDBOX_USERS")
    assert load_settings().dashtam_sandbox_users == 3 and users_from_env() == 3


def test_sandbox_keys_import_on_their_own_in_a_fresh_interpreter() -> None:
    """``sandbox_keys`` is importable first thing (as ``demo.py`` and ``bench`` import it):
    it once failed with a circular import unless ``dashtam_pipeline.sandbox`` came first,
    because the sandbox app loads the module a provider names as its routes."""
    import subprocess
    import sys

    code = ("from dashtam_pipeline.providers.alpaca.sandbox import sandbox_keys; "
            "print(*sandbox_keys(42, 2))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == list(sandbox_keys(42, 2))


@pytest.mark.parametrize("module", sorted(
    f"dashtam_pipeline.providers.{p.parent.name}.{p.stem}"
    for p in (Path(__file__).resolve().parents[1] / "dashtam_pipeline" / "providers").glob(
        "*/sandbox*.py")))
def test_every_provider_sandbox_module_imports_first_thing(module: str) -> None:
    """Any provider's sandbox module imports first thing in a fresh interpreter: the
    sandbox package loads its app (which imports every provider's routes) on first use."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
