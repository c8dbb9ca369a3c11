"""The resilience hooks every provider client is built with, in the order they must run.

``ProviderHTTP`` consults its hooks in list order before each attempt, and the first one
that raises refuses the attempt before the later ones run. So the order is a decision:

1. the circuit breaker: an open circuit refuses at once. Were it after the rate limiter,
   a refused attempt would first wait for a per-minute slot and then take a slot (and a
   unit of daily quota) for a request that is never sent.
2. the rate limiter: waits for room in the window, or refuses when the daily quota is used
   up. Its slot is taken last among the checks, right before the request is sent, so only
   sent attempts count. (One cost of this order: a half-open probe the breaker granted
   and the quota then refused is not sent; the breaker lets another probe through once
   that one expires, after the breaker timeout.)
3. the call audit: it never refuses; it records each attempt's outcome after the others
   have counted it.

All three live in ``state_store(settings)``, so every process of a deployment shares them.

In sandbox mode (``DASHTAM_SANDBOX=true``) there is no rate limiter: the built-in sandbox
imposes no limits, and its requests must not spend the real key's daily quota in a state
store that a real run may share (nor make ``make demo`` wait on Polygon's 5 per minute).
A sandbox served over HTTP with ``DASHTAM_SANDBOX=false`` is treated like the real API.
"""

from __future__ import annotations

from dashtam_pipeline.http import CallHook
from dashtam_pipeline.registry import ProviderSlug, get_provider_metadata
from dashtam_pipeline.resilience.audit import CallAudit
from dashtam_pipeline.resilience.breaker import CircuitBreaker
from dashtam_pipeline.resilience.limits import RateLimiter
from dashtam_pipeline.settings import ProviderSettings, Settings
from dashtam_pipeline.state.store import state_store


def resilience_hooks(
    settings: Settings,
    slug: ProviderSlug | str,
    *,
    run_id: str | None = None,
    config: ProviderSettings | None = None,
) -> list[CallHook]:
    """[breaker, rate limiter, audit] for one provider, configured from ``settings``
    ([breaker, audit] in sandbox mode). ``run_id`` tags the audit rows with the Dagster
    run that made the calls. ``config`` is the client's own resolved configuration when it
    differs from the platform's (a user's own keys): its ``limit_key`` names the rate
    budget the requests spend, and its secrets are scrubbed from the audit too. The
    breaker stays per provider: an outage is the provider's, whoever's key it was."""
    meta = get_provider_metadata(slug)
    provider = meta.slug.value
    config = config or settings.provider(meta.slug)
    store = state_store(settings)
    hooks: list[CallHook] = [
        CircuitBreaker(
            store, provider,
            threshold=config.breaker_threshold,
            timeout_seconds=config.breaker_timeout_seconds,
        ),
    ]
    if not settings.dashtam_sandbox:
        hooks.append(
            RateLimiter(
                store, config.limit_key(),
                per_minute=config.requests_per_minute,
                per_day=config.requests_per_day,
                tier=config.tier,
            )
        )
    hooks.append(
        CallAudit(
            store,
            rights_profile=settings.dashtam_rights_profile,
            secrets=config.secret_values(),
            run_id=run_id,
        )
    )
    return hooks


def provider_health(settings: Settings, slug: ProviderSlug | str) -> dict[str, object]:
    """A provider's breaker state and quota usage now, for materialization metadata and
    ``dashtam providers``."""
    from dashtam_pipeline.resilience.breaker import breaker_states

    meta = get_provider_metadata(slug)
    config = settings.provider(meta.slug)
    store = state_store(settings)
    breaker = breaker_states(store).get(meta.slug.value)
    usage = RateLimiter(
        store, meta.slug.value,
        per_minute=config.requests_per_minute, per_day=config.requests_per_day, tier=config.tier,
    ).usage()
    health: dict[str, object] = {
        "circuit_state": breaker.state if breaker else "closed",
        "consecutive_failures": breaker.consecutive_failures if breaker else 0,
        "requests_today": usage["requests_today"],
        "requests_per_day": usage["requests_per_day"],
        "requests_per_minute": usage["requests_per_minute"],
        "tier": usage["tier"],
    }
    if settings.dashtam_sandbox:
        # Sandbox requests take no quota slot (see the module docstring): a bare
        # "requests_today: 0" beside a run's 20 calls would read as a broken counter.
        health["requests_today"] = None
        health["quota"] = (
            "not counted: sandbox requests do not spend the real key's daily quota"
        )
    return health
