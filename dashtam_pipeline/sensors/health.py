"""Is a provider fit to take replayed work now? One answer for every recovery sensor.

A replay sent to a provider whose circuit is open is refused before any request
(``CIRCUIT_OPEN``), and one sent after its daily quota is spent is refused too
(``QUOTA_EXHAUSTED``): either way it burns one of the entry's bounded replays for nothing.
So the sensors ask this module first, with the same state the clients' hooks use (the
breaker row and the quota counter in the state store), through an injected clock so tests
can move time past a breaker timeout or a quota reset.

Three answers: ``healthy`` (breaker closed, quota left: replay everything), ``probe_due``
(the breaker's timeout has passed: it will let exactly one probe through, so replay one
run's worth and wait for the verdict), ``unavailable`` (open breaker or spent quota, with
the time it may change).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from dashtam_pipeline.registry import get_provider_metadata
from dashtam_pipeline.resilience.breaker import CLOSED, Clock, breaker_states, utc_now
from dashtam_pipeline.resilience.limits import RateLimiter
from dashtam_pipeline.settings import Settings
from dashtam_pipeline.state.store import state_store

HEALTHY = "healthy"
PROBE_DUE = "probe_due"
UNAVAILABLE = "unavailable"


@dataclass(frozen=True)
class ProviderHealth:
    """A provider's fitness for replays at one moment; ``retry_at`` says when an
    ``unavailable`` provider may change (next breaker probe, quota reset)."""

    provider: str
    status: str
    reason: str
    retry_at: datetime | None = None

    @property
    def can_replay(self) -> bool:
        return self.status in (HEALTHY, PROBE_DUE)


def provider_health_now(
    settings: Settings, provider: str, *, clock: Clock = utc_now
) -> ProviderHealth:
    """The provider's breaker and daily quota as ``clock`` sees them now."""
    try:
        meta = get_provider_metadata(provider)
    except ValueError as error:
        return ProviderHealth(provider, UNAVAILABLE, str(error))
    slug = meta.slug.value
    store = state_store(settings)
    now = clock()

    quota = _quota_exhausted_until(settings, slug, clock)
    if quota is not None:
        return ProviderHealth(
            slug, UNAVAILABLE, f"{slug} daily quota is used up until {quota.isoformat()}", quota
        )

    breaker = breaker_states(store, clock=clock).get(slug)
    if breaker is None or breaker.state == CLOSED:
        return ProviderHealth(slug, HEALTHY, f"{slug} circuit closed")
    if breaker.next_probe_at is not None and now >= breaker.next_probe_at:
        return ProviderHealth(
            slug,
            PROBE_DUE,
            f"{slug} circuit half-open: one probe is due since {breaker.next_probe_at.isoformat()}",
        )
    return ProviderHealth(
        slug,
        UNAVAILABLE,
        f"{slug} circuit {breaker.state} after {breaker.consecutive_failures} consecutive "
        f"failures; next probe at {_iso(breaker.next_probe_at)}",
        breaker.next_probe_at,
    )


def _quota_exhausted_until(settings: Settings, slug: str, clock: Clock) -> datetime | None:
    """When today's spent quota resets, or None if there is quota left (or no quota: in
    sandbox mode the clients run without a rate limiter, see ``resilience/hooks.py``)."""
    if settings.dashtam_sandbox:
        return None
    config = settings.provider(slug)
    if config.requests_per_day is None:
        return None
    usage = RateLimiter(
        state_store(settings),
        slug,
        per_minute=config.requests_per_minute,
        per_day=config.requests_per_day,
        tier=config.tier,
        clock=clock,
    ).usage()
    if usage["requests_today"] < config.requests_per_day:
        return None
    return datetime.fromisoformat(usage["quota_resets_at"])


def _iso(moment: datetime | None) -> str:
    return "?" if moment is None else moment.isoformat(timespec="seconds")
