"""Building a provider's client, found by slug.

Each provider's metadata names its client class as an import path (``client``), loaded on
first use, so importing the pipeline does not import every provider's module, and the
compliance tests can check that every provider has a client implementing its capabilities.
The shared client machinery (``base``, ``records``) lives in this package.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx

from dashtam_pipeline.http import CallHook, RetryPolicy
from dashtam_pipeline.registry import (
    ProviderAuthType,
    ProviderSlug,
    get_provider_metadata,
    load_attribute,
)
from dashtam_pipeline.settings import Settings


def client_class(slug: ProviderSlug | str) -> type[Any]:
    """The client class of a provider: its metadata's ``client`` (imported on first use)."""
    meta = get_provider_metadata(slug)
    if not meta.client:
        raise ValueError(
            f"provider {meta.slug.value!r} declares no client: set METADATA.client in "
            f"dashtam_pipeline/providers/{meta.slug.value}/__init__.py"
        )
    return load_attribute(meta.client)  # type: ignore[no-any-return]


def build_client(
    slug: ProviderSlug | str,
    settings: Settings,
    *,
    transport: httpx.BaseTransport | None = None,
    retry: RetryPolicy | None = None,
    hooks: Sequence[CallHook] | None = None,
    run_id: str | None = None,
    connection_id: str | None = None,
) -> Any:
    """A ready client for ``slug`` configured from ``settings``; with ``connection_id``,
    for that connection alone (its OAuth tokens, or the user's own stored keys).

    Every HTTP client gets the resilience hooks (shared circuit breaker, rate limits and
    quotas, call audit) unless ``hooks`` replaces them. OAuth providers get a token source
    backed by the encrypted connection store; a file import's class builds itself
    (``from_settings``: its inbox).
    """
    meta = get_provider_metadata(slug)
    cls = client_class(meta.slug)
    provider_settings = settings.provider(meta.slug)
    if meta.auth_type is ProviderAuthType.FILE_IMPORT:  # no HTTP: the client says what it needs
        return cls.from_settings(provider_settings, settings)
    kwargs: dict[str, Any] = {"transport": transport, "retry": retry}
    if meta.is_oauth:
        from dashtam_pipeline.connections import token_source_for

        kwargs["token_source"] = token_source_for(meta.slug, settings, transport=transport,
                                                  connection_id=connection_id)
    elif connection_id is not None:
        from dataclasses import replace

        from pydantic import SecretStr

        from dashtam_pipeline.connections import connection_secrets

        own = connection_secrets(settings, connection_id)
        if own:  # a user's own keys: never the environment's, and their own rate budget
            provider_settings = replace(
                provider_settings,
                secrets={**provider_settings.secrets,
                         **{k: SecretStr(v) for k, v in own.items()}},
                user_key_id=next(iter(own.values())),  # the first user key field: its id
            )
    if hooks is None:
        from dashtam_pipeline.resilience.hooks import resilience_hooks

        hooks = resilience_hooks(settings, meta.slug, run_id=run_id, config=provider_settings)
    kwargs["hooks"] = hooks
    wiring = getattr(cls, "wiring", None)  # a client's own extra collaborators
    if wiring is not None:
        kwargs.update(wiring(settings))
    return cls(provider_settings, **kwargs)
