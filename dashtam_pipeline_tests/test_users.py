"""Many users (issue 11): connections as data, per-user Chase folders, per-connection
ingestion with the owner stamped, and ``forget`` erasing exactly one user."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from dashtam_pipeline.cli import main
from dashtam_pipeline.clients.base import FetchRequest
from dashtam_pipeline.connections import (
    connect_user_keys,
    connection_secrets,
    syncable_connections,
)
from dashtam_pipeline.domain.provider_connection import OPERATOR_USER_ID
from dashtam_pipeline.ingest import ingest_dataset
from dashtam_pipeline.providers.chase_file.client import ChaseFileClient, chase_connection_id
from dashtam_pipeline.registry import Dataset, get_dataset_spec, get_provider_metadata
from dashtam_pipeline.settings import load_settings
from dashtam_pipeline.state.connection_repository import ConnectionRepository
from dashtam_pipeline.storage.lake import Lake
from dashtam_pipeline_tests.user_helpers import ALICE, BOB, connect_schwab

EXPORT = (
    "Details,Posting Date,Description,Amount,Type,Balance,Check or Slip #\n"
    "DEBIT,01/05/2024,COFFEE SHOP,-4.50,DEBIT_CARD,995.50,,\n"
    "CREDIT,01/06/2024,PAYROLL,1000.00,ACH_CREDIT,1995.50,,\n"
)


@pytest.fixture
def sandbox(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DASHTAM_SANDBOX", "true")
    return data_dir


def test_a_users_own_alpaca_keys_are_stored_encrypted_and_used_for_its_connection(
    sandbox: Path,
) -> None:
    settings = load_settings()
    conn = connect_user_keys(settings, "alpaca", user_id=ALICE, alias="paper",
                             key_id="alice-key-id-77", secret_key="alice-secret-99")
    assert conn.status.value == "ACTIVE" and conn.user_id == ALICE
    assert b"alice-secret-99" not in (conn.credentials.encrypted_data if conn.credentials
                                      else b"")
    assert connection_secrets(settings, conn.id) == {
        "alpaca_api_key_id": "alice-key-id-77", "alpaca_api_secret_key": "alice-secret-99"}
    # the same alias again is the same connection (new keys), another alias a new one
    again = connect_user_keys(settings, "alpaca", user_id=ALICE, alias="paper",
                              key_id="k2", secret_key="s2")
    other = connect_user_keys(settings, "alpaca", user_id=ALICE, alias="live",
                              key_id="k3", secret_key="s3")
    assert again.id == conn.id and other.id != conn.id
    repo = ConnectionRepository.from_settings(settings)
    assert {c.alias for c in repo.find_active_by_user(ALICE)} == {"paper", "live"}
    # the nightly set: both of Alice's plus the operator's own (from the environment)
    users = {c.user_id for c in syncable_connections(settings, "alpaca")}
    assert users == {ALICE, OPERATOR_USER_ID}


def test_cli_connect_alpaca_reads_keys_from_stdin_and_lists_by_user(
    sandbox: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import io
    import json

    monkeypatch.setattr("sys.stdin", io.StringIO("bob-key\nbob-secret-xyz\n"))
    assert main(["connect", "alpaca", "--user", str(BOB), "--alias", "mine", "--stdin"]) == 0
    out, _ = capsys.readouterr()
    assert "bob-secret-xyz" not in out
    assert main(["connections", "--json", "--user", str(BOB)]) == 0
    entries = json.loads(capsys.readouterr().out)
    assert [(e["user_id"], e["provider"], e["alias"], e["status"]) for e in entries] == [
        (str(BOB), "alpaca", "mine", "ACTIVE")]
    assert {"id", "user_id", "provider", "alias", "status", "expires_at",
            "refresh_expires_at", "last_sync_at"} <= set(entries[0])
    assert main(["connect", "alpaca", "--user", "not-a-uuid", "--alias", "x", "--stdin"]) == 1
    assert main(["forget", "--user", str(BOB)]) == 1
    assert "--yes" in capsys.readouterr().err


def test_alpaca_rows_of_each_connection_carry_its_user_and_id(sandbox: Path) -> None:
    settings = load_settings()
    alice = connect_user_keys(settings, "alpaca", user_id=ALICE, alias="paper",
                              key_id="a", secret_key="b")
    lake = Lake(settings.lake_dir)
    spec = get_dataset_spec(Dataset.TRANSACTIONS)
    today = dt.date.today()
    outcome = ingest_dataset(spec, [get_provider_metadata("alpaca")],
                             FetchRequest(start=today - dt.timedelta(days=90), end=today,
                                          as_of=today), settings, lake)
    assert not outcome.skipped
    frame = lake.read_frame("brokerage.transactions")
    owners = set(zip(frame["user_id"], frame["connection_id"], strict=True))
    assert (str(ALICE), str(alice.id)) in owners
    assert {u for u, _ in owners} == {str(ALICE), str(OPERATOR_USER_ID)}
    # first sync took the whole history: as many rows per connection as the sandbox has
    counts = frame.groupby("connection_id").size()
    assert counts.nunique() == 1 and counts.iloc[0] > 0
    # a second sync asks only for the overlap window and adds no duplicate
    before = len(frame)
    ingest_dataset(spec, [get_provider_metadata("alpaca")],
                   FetchRequest(start=today, end=today, as_of=today), settings, lake)
    assert len(lake.read_frame("brokerage.transactions")) == before


def test_chase_files_in_a_user_folder_belong_to_that_user(sandbox: Path) -> None:
    settings = load_settings()
    inbox = settings.chase_inbox
    (inbox / str(ALICE)).mkdir(parents=True)
    (inbox / "Chase1234_Activity_20240107.CSV").write_text(EXPORT)
    (inbox / str(ALICE) / "Chase1234_Activity_20240107.CSV").write_text(EXPORT)
    (inbox / "not-a-user").mkdir()
    client = ChaseFileClient(settings.provider("chase_file"), inbox=inbox)
    result = client.fetch_transactions(FetchRequest())
    owners = result.frame.groupby(["user_id", "connection_id"]).size().to_dict()
    assert owners == {
        (str(OPERATOR_USER_ID), str(chase_connection_id(OPERATOR_USER_ID))): 2,
        (str(ALICE), str(chase_connection_id(ALICE))): 2,
    }
    assert any("'not-a-user' is a folder" in n for n in result.notes)


def test_forget_erases_exactly_one_user(
    sandbox: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = load_settings()
    for user in (ALICE, BOB):
        connect_user_keys(settings, "alpaca", user_id=user, alias="paper", key_id="a",
                          secret_key="b")
    lake = Lake(settings.lake_dir)
    today = dt.date.today()
    for dataset in (Dataset.ACCOUNTS, Dataset.TRANSACTIONS):
        ingest_dataset(get_dataset_spec(dataset), [get_provider_metadata("alpaca")],
                       FetchRequest(start=today - dt.timedelta(days=30), end=today,
                                    as_of=today), settings, lake)
    before = lake.read_frame("brokerage.transactions")
    bob_rows = before[before["user_id"] == str(BOB)]
    assert len(bob_rows) > 0

    assert main(["forget", "--user", str(ALICE), "--yes"]) == 0
    out = capsys.readouterr().out
    assert "brokerage.transactions" in out and str(ALICE) in out

    after = lake.read_frame("brokerage.transactions")
    assert str(ALICE) not in set(after["user_id"])
    assert len(after) == len(before) - (before["user_id"] == str(ALICE)).sum()
    assert after[after["user_id"] == str(BOB)].sort_values("transaction_id").reset_index(
        drop=True).equals(bob_rows.sort_values("transaction_id").reset_index(drop=True))
    assert str(ALICE) not in set(lake.read_frame("brokerage.accounts")["user_id"])
    repo = ConnectionRepository.from_settings(settings)
    assert repo.find_by_user_id(ALICE) == [] and len(repo.find_by_user_id(BOB)) == 1


def test_a_lapsed_login_expires_only_its_connection_and_the_others_land(sandbox: Path) -> None:
    from dashtam_pipeline.connections import StoredTokens, load_cipher
    from dashtam_pipeline.sandbox.app import SandboxApp

    settings = load_settings()
    connect_schwab(ALICE, "ira")
    connect_schwab(BOB, "brokerage")
    repo = ConnectionRepository.from_settings(settings)
    (alice,) = repo.find_by_user_id(ALICE)
    tokens = StoredTokens.unseal(load_cipher(settings), alice.credentials, "schwab")
    oauth = SandboxApp.shared().world.oauth
    oauth.revoke(tokens.access_token)  # Alice's login lapsed at Schwab: both refused
    oauth.revoke(tokens.refresh_token)

    lake = Lake(settings.lake_dir)
    outcome = ingest_dataset(get_dataset_spec(Dataset.ACCOUNTS),
                             [get_provider_metadata("schwab")],
                             FetchRequest(as_of=dt.date.today()), settings, lake)
    assert not outcome.skipped
    assert repo.find_by_user_id(ALICE)[0].status.value == "EXPIRED"
    assert repo.find_by_user_id(BOB)[0].status.value == "ACTIVE"
    note = next(n for n in outcome.notes if n.startswith("skipped"))
    assert f"dashtam connect schwab --user {ALICE} --alias ira" in note
    users = set(lake.read_frame("brokerage.accounts")["user_id"])
    assert users == {str(BOB)}


def limit_keys(client: object) -> list[str]:
    """The rate budgets a client's requests spend (its ``RateLimiter`` hooks)."""
    from dashtam_pipeline.resilience.limits import RateLimiter

    return [h.provider for h in client.http.hooks if isinstance(h, RateLimiter)]  # type: ignore[attr-defined]


def test_rate_budgets_are_where_the_provider_counts_them(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Alpaca counts requests per key: each user's own key spends a budget of its own
    (named by a digest of the key id, never the key), the operator's key the provider's.
    Schwab counts per app: every user's connection spends the one app budget."""
    from dashtam_pipeline.clients import build_client
    from dashtam_pipeline.state.store import state_store

    monkeypatch.setenv("ALPACA_API_KEY_ID", "operator-key-id")
    monkeypatch.setenv("ALPACA_API_SECRET_KEY", "operator-secret")
    settings = load_settings()  # not the sandbox: the limiter runs
    alice = connect_user_keys(settings, "alpaca", user_id=ALICE, alias="paper",
                              key_id="alice-key-id", secret_key="alice-secret")
    bob = connect_user_keys(settings, "alpaca", user_id=BOB, alias="paper",
                            key_id="bob-key-id", secret_key="bob-secret")

    (alice_budget,) = limit_keys(build_client("alpaca", settings, connection_id=str(alice.id)))
    (bob_budget,) = limit_keys(build_client("alpaca", settings, connection_id=str(bob.id)))
    (operator_budget,) = limit_keys(build_client("alpaca", settings))
    assert alice_budget.startswith("alpaca:key-") and bob_budget.startswith("alpaca:key-")
    assert len({alice_budget, bob_budget, operator_budget}) == 3
    assert operator_budget == "alpaca"
    assert "alice-key-id" not in alice_budget and "alice-secret" not in alice_budget
    # the same key is the same budget, whichever process builds the client
    (again,) = limit_keys(build_client("alpaca", settings, connection_id=str(alice.id)))
    assert again == alice_budget

    # one user's budget spent does not slow another's (the store holds both counts)
    for _ in range(3):
        for hook in build_client("alpaca", settings, connection_id=str(alice.id)).http.hooks:
            hook.before_attempt("alpaca", "/v2/account")
    from dashtam_pipeline.resilience.limits import RateLimiter

    def used(budget: str) -> int:
        limiter = RateLimiter(state_store(settings), budget, per_minute=200, per_day=None,
                              tier="free")
        return int(limiter.usage()["requests_today"])

    assert used(alice_budget) == 3 and used(bob_budget) == 0 and used("alpaca") == 0

    schwab_meta = get_provider_metadata("schwab")
    assert all(limit.per.value == "app" for limit in schwab_meta.rate_limits.values())
    assert settings.provider("schwab").limit_key() == "schwab"
