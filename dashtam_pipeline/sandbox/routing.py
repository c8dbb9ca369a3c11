"""Routes and the world they answer from.

A provider module lists its ``Route``s (method + a regex over the path after the slug,
which is the provider's real path, e.g. ``/stable/quote``) and the function that shapes
its error bodies. Handlers are plain functions of (world, request, path groups), so a
provider is testable without WSGI and the app is only dispatch.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dashtam_pipeline.sandbox.brokerage_data import Brokerage
from dashtam_pipeline.sandbox.common import Clock, Request, Response, ny_today
from dashtam_pipeline.sandbox.fred_data import FredData
from dashtam_pipeline.sandbox.fundamentals import Fundamentals
from dashtam_pipeline.sandbox.market_data import MarketData
from dashtam_pipeline.sandbox.oauth import OAuthServer


class World:
    """Everything a handler may read: the seed, the clock and the seeded data sets.

    Data sets are built lazily and cached; only the OAuth server holds mutable state.
    ``users`` is how many sandbox users the brokerages know (``DASHTAM_SANDBOX_USERS``):
    users 1..``users`` each have their own accounts, a higher number is refused.
    """

    def __init__(self, seed: int, clock: Clock, users: int = 1) -> None:
        self.seed = seed
        self.clock = clock
        self.users = users
        self.market = MarketData(seed)
        self.fundamentals = Fundamentals(seed)
        self.fred = FredData(seed)
        self.brokerage = Brokerage(seed, self.market)
        self.oauth = OAuthServer(seed, clock)

    def now(self) -> dt.datetime:
        moment = self.clock()
        if moment.tzinfo is None:
            raise ValueError("the sandbox clock must return an aware datetime")
        return moment

    def knows_user(self, user: int | None) -> bool:
        """Whether ``user`` is one of this sandbox's users (1..``users``)."""
        return user is not None and 1 <= user <= self.users

    def user_numbered(self, digits: str) -> int | None:
        """The sandbox user whose number ``digits`` spells (from a login hint or a key id),
        or None if it spells no number or no user of this sandbox."""
        user = int(digits) if digits.isdigit() else None
        return user if self.knows_user(user) else None

    def today(self) -> dt.date:
        """The calendar date in New York (the exchange's and the US agencies' day)."""
        return ny_today(self.now())


Handler = Callable[[World, Request, dict[str, str]], Response]
ErrorShaper = Callable[[int, str], Any]


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    handler: Handler


def route(method: str, pattern: str, handler: Handler) -> Route:
    """A route over the path after the slug; ``pattern`` must match it whole."""
    return Route(method.upper(), re.compile(pattern), handler)


@dataclass(frozen=True)
class Provider:
    """One provider as the app dispatches it."""

    slug: str
    routes: tuple[Route, ...]
    error_body: ErrorShaper  # (status, message) -> that provider's error JSON

    def match(self, method: str, subpath: str) -> tuple[Route | None, dict[str, str], bool]:
        """(route, path groups, path known under another method)."""
        path_known = False
        for candidate in self.routes:
            found = candidate.pattern.fullmatch(subpath)
            if found is None:
                continue
            if candidate.method == method:
                return candidate, found.groupdict(), True
            path_known = True
        return None, {}, path_known
