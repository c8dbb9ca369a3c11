"""Resilience shared by every process: circuit breakers, rate limits and daily quotas,
and the call audit, all kept in the state store and plugged into ``ProviderHTTP`` as
``CallHook``s by ``resilience_hooks``."""

from dashtam_pipeline.resilience.audit import CallAudit, call_summary, recent_calls
from dashtam_pipeline.resilience.breaker import BreakerState, CircuitBreaker, breaker_states
from dashtam_pipeline.resilience.hooks import resilience_hooks
from dashtam_pipeline.resilience.limits import RateLimiter

__all__ = [
    "BreakerState",
    "CallAudit",
    "CircuitBreaker",
    "RateLimiter",
    "breaker_states",
    "call_summary",
    "recent_calls",
    "resilience_hooks",
]
