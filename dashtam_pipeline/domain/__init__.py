"""Domain entities: pure data and rules, no HTTP, no OAuth, no database.

Infrastructure (clients, the state store, the CLI) depends on these, never the reverse,
so the rules can be tested with plain values and a fake clock.
"""

from dashtam_pipeline.domain.provider_connection import (
    DEFAULT_USER_ID,
    ConnectionStatus,
    CredentialType,
    Failure,
    ProviderConnection,
    ProviderCredentials,
    Result,
    Success,
    provider_id_for,
)

__all__ = [
    "DEFAULT_USER_ID",
    "ConnectionStatus",
    "CredentialType",
    "Failure",
    "ProviderConnection",
    "ProviderCredentials",
    "Result",
    "Success",
    "provider_id_for",
]
