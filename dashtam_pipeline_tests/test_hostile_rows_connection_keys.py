"""One user's stored Alpaca keys that no HTTP request can carry (non-ASCII, control
characters) fail that connection alone: the other connections' rows land, only they get a
``last_sync_at``, and the error names the connection (alias, user, id), never the key.

The bad keys are stored the way the app's own ``ConnectionRepository`` API would store them
(``seal`` + ``mark_connected`` + ``save``), bypassing any check ``dashtam connect`` makes.
"""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path

import pytest

from dashtam_pipeline.clients.base import FetchRequest
from dashtam_pipeline.connections import load_cipher, seal, utcnow
from dashtam_pipeline.domain.provider_connection import (
    OPERATOR_USER_ID,
    CredentialType,
    ProviderConnection,
)
from dashtam_pipeline.ingest import ConnectionsFailed, ingest_dataset
from dashtam_pipeline.registry import Dataset, get_dataset_spec, get_provider_metadata
from dashtam_pipeline.settings import load_settings
from dashtam_pipeline.state.connection_repository import ConnectionRepository
from dashtam_pipeline.storage.lake import Lake
from dashtam_pipeline_tests.loopback import materialize
from dashtam_pipeline_tests.user_helpers import ALICE

BAD_KEYS = {
    "non-ascii": ("ключ", "секрет-ключ"),
    "binary": ("PK\x00\x01", "secret\r\nX-Injected: 1"),
}


@pytest.fixture
def sandbox(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DASHTAM_SANDBOX", "true")
    return data_dir


def store_keys_like_the_app(key_id: str, secret: str) -> ProviderConnection:
    settings = load_settings()
    now = utcnow()
    connection = ProviderConnection.new("alpaca", now=now, alias="broken", user_id=ALICE)
    connection.mark_connected(
        seal(load_cipher(settings),
             {"alpaca_api_key_id": key_id, "alpaca_api_secret_key": secret},
             CredentialType.API_KEY),
        now=now,
    )
    ConnectionRepository.from_settings(settings).save(connection)
    return connection


def last_syncs() -> dict[uuid.UUID, dt.datetime | None]:
    repo = ConnectionRepository.from_settings(load_settings())
    return {c.id: c.last_sync_at for c in repo.find_by_provider("alpaca")}


@pytest.mark.parametrize("keys", list(BAD_KEYS), ids=list(BAD_KEYS))
def test_unsendable_keys_fail_their_connection_alone(sandbox: Path, keys: str) -> None:
    key_id, secret = BAD_KEYS[keys]
    bad = store_keys_like_the_app(key_id, secret)
    settings = load_settings()
    lake = Lake(settings.lake_dir)
    today = dt.date.today()

    with pytest.raises(ConnectionsFailed) as raised:
        ingest_dataset(get_dataset_spec(Dataset.ACCOUNTS), [get_provider_metadata("alpaca")],
                       FetchRequest(as_of=today), settings, lake)

    error = raised.value
    assert error.connection_ids == (str(bad.id),)
    message = str(error)
    assert "'broken'" in message and str(bad.id) in message and str(ALICE) in message
    assert "cannot be sent" in message and "APCA-API-KEY-ID" in message
    for part in (key_id, secret, "ключ", "секрет"):
        assert part not in message
    # the operator's good connection landed, and only it is marked synced
    owners = set(lake.read_frame("brokerage.accounts")["user_id"])
    assert owners == {str(OPERATOR_USER_ID)}
    syncs = last_syncs()
    assert syncs[bad.id] is None
    assert [at is not None for cid, at in syncs.items() if cid != bad.id] == [True]
    # the keys can never work: the connection says so, and the next run skips it
    repo = ConnectionRepository.from_settings(settings)
    stored = repo.find_by_id(bad.id)
    assert stored is not None and stored.status.value in ("REVOKED", "FAILED")


def test_materialize_with_unsendable_keys_names_the_connection(sandbox: Path) -> None:
    bad = store_keys_like_the_app(*BAD_KEYS["non-ascii"])
    report = materialize("key:brokerage/alpaca_accounts")
    outcome = report.assets["brokerage/alpaca_accounts"]
    assert not report.ok and outcome.status == "failed"
    assert "'broken'" in outcome.detail and "cannot be sent" in outcome.detail
    assert "UnicodeEncodeError" not in outcome.detail and "Traceback" not in outcome.detail
    # the operator's rows are in the warehouse all the same
    frame = Lake(load_settings().lake_dir).read_frame("brokerage.accounts")
    assert set(frame["user_id"]) == {str(OPERATOR_USER_ID)}
    assert last_syncs()[bad.id] is None
