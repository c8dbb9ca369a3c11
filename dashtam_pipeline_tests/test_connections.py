"""Encrypted OAuth token storage on both state-store backends."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from dashtam_pipeline.connections import SecretKeyError, StoredTokens, TokenStore, load_cipher
from dashtam_pipeline.registry import ProviderSlug
from dashtam_pipeline.settings import load_settings

NOW = dt.datetime(2026, 11, 22, 12, 0, tzinfo=dt.UTC)
TOKENS = StoredTokens(
    access_token="access-token-SECRET-1", refresh_token="refresh-token-SECRET-2",
    expires_at=NOW + dt.timedelta(minutes=30), refresh_expires_at=NOW + dt.timedelta(days=7),
)


def test_tokens_round_trip_encrypted(state_url: str, data_dir: Path) -> None:
    key = Fernet.generate_key().decode()
    settings = load_settings(dashtam_state_url=state_url, dashtam_secret_key=key)
    store = TokenStore(settings)
    store.save(ProviderSlug.SCHWAB, TOKENS)
    assert store.load(ProviderSlug.SCHWAB) == TOKENS
    (ciphertext,) = store.store.query("SELECT ciphertext FROM oauth_tokens")[0]
    assert b"SECRET" not in bytes(ciphertext)

    # rotation: a new key first, the old one after it, still decrypts
    rotated = load_settings(dashtam_state_url=state_url,
                            dashtam_secret_key=f"{Fernet.generate_key().decode()},{key}")
    assert TokenStore(rotated).load(ProviderSlug.SCHWAB) == TOKENS
    # a wrong key is a clear error, never garbage
    wrong = load_settings(dashtam_state_url=state_url,
                          dashtam_secret_key=Fernet.generate_key().decode())
    with pytest.raises(SecretKeyError, match="cannot be decrypted"):
        TokenStore(wrong).load(ProviderSlug.SCHWAB)


def test_generated_key_file_is_private(data_dir: Path) -> None:
    load_cipher(load_settings())
    key_file = data_dir / ".secret_key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    with pytest.raises(SecretKeyError, match="not a valid Fernet key"):
        load_cipher(load_settings(dashtam_secret_key="not-a-key"))
