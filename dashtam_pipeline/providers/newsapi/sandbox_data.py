"""NewsAPI articles: a few deterministic finance stories per query and UTC day.

An article is a function of (seed, query, day, index) only, so any window over the same
days lists the same articles with the same URLs, whichever page or process asks.
Headlines mix good and bad news so sentiment scoring has something to tell apart.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any

from dashtam_pipeline.sandbox.common import UTC, iso_z, rng_for, stable_hex
from dashtam_pipeline.sandbox.market_data import _KNOWN, company

SOURCES: tuple[tuple[str | None, str, str], ...] = (
    ("reuters", "Reuters", "www.reuters.com"),
    ("bloomberg", "Bloomberg", "www.bloomberg.com"),
    ("cnbc", "CNBC", "www.cnbc.com"),
    ("the-wall-street-journal", "The Wall Street Journal", "www.wsj.com"),
    ("business-insider", "Business Insider", "www.businessinsider.com"),
    ("fortune", "Fortune", "fortune.com"),
    (None, "Yahoo Entertainment", "finance.yahoo.com"),
    (None, "Seeking Alpha", "seekingalpha.com"),
    (None, "Benzinga", "www.benzinga.com"),
    (None, "Investopedia", "www.investopedia.com"),
)

AUTHORS: tuple[str | None, ...] = (
    "Jane Whitfield", "Marcus Ortega", "Priya Raman", "Tom Hollis", "Reuters Staff",
    "Elena Kowalski", None, "Samir Haddad", "Lauren Fitch", None,
)

POSITIVE = (
    "{name} shares jump after earnings beat expectations",
    "{name} raises full-year outlook as demand stays strong",
    "Analysts upgrade {name} ({ticker}) citing record margins",
    "{name} announces $10 billion buyback, stock climbs",
    "{name} rallies to a new high on upbeat guidance",
    "Why investors are bullish on {name} this quarter",
)
NEGATIVE = (
    "{name} stock falls as regulators open antitrust probe",
    "{name} misses revenue estimates, shares slide",
    "{name} ({ticker}) downgraded on weak demand and rising costs",
    "{name} warns of supply disruptions; stock drops",
    "Lawsuit against {name} weighs on shares",
    "{name} cuts jobs amid slowing growth",
)
NEUTRAL = (
    "{name} to report quarterly results next week: what to expect",
    "{name} ({ticker}) holds annual shareholder meeting",
    "Here's how {name} stacks up against its peers",
)

PARAGRAPH = (
    "{name} ({ticker}) was in focus on {day:%A} as investors weighed the latest news. "
    "Trading volume was above its 30-day average, and options activity picked up as "
    "traders positioned for the next move. Analysts said the coming weeks would test "
    "whether the trend can hold, with the company's next report a key catalyst for the "
    "stock and for the sector as a whole."
)


@dataclass(frozen=True)
class Article:
    published_at: dt.datetime
    body: dict[str, Any]
    relevance: float


def _subject(query: str) -> tuple[str, str]:
    """(display name, ticker) for a query: a known symbol's company, else the query."""
    ticker = query.strip().upper()
    if re.fullmatch(r"[A-Z]{1,5}([.\-][A-Z])?", ticker) and (
        ticker in _KNOWN or ticker.replace("-", ".") in _KNOWN
    ):
        return company(ticker).name.replace(" Inc.", "").replace(",", ""), ticker
    return query.strip(), ticker.replace(" ", "")[:5] or "MKT"


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:70]


def articles_for_day(seed: int, query: str, day: dt.date) -> list[Article]:
    """The articles published on one UTC day for one query (stable)."""
    rng = rng_for(seed, "news", query.strip().lower(), day)
    name, ticker = _subject(query)
    out = []
    for index in range(int(rng.integers(2, 6))):
        mood = rng.random()
        templates = POSITIVE if mood < 0.42 else NEGATIVE if mood < 0.84 else NEUTRAL
        title = templates[int(rng.integers(0, len(templates)))].format(name=name, ticker=ticker)
        source_id, source_name, domain = SOURCES[int(rng.integers(0, len(SOURCES)))]
        author = AUTHORS[int(rng.integers(0, len(AUTHORS)))]
        seconds = int(rng.integers(0, 86400))
        published = dt.datetime(day.year, day.month, day.day, tzinfo=UTC) + dt.timedelta(
            seconds=seconds
        )
        uid = stable_hex(seed, query.strip().lower(), day, index, length=10)
        url = f"https://{domain}/markets/{day:%Y/%m/%d}/{_slug(title)}-{uid}"
        content = PARAGRAPH.format(name=name, ticker=ticker, day=day)
        body = {
            "source": {"id": source_id, "name": source_name},
            "author": author,
            "title": title,
            "description": f"{title}. {content[:120]}…",
            "url": url,
            "urlToImage": None if rng.random() < 0.3 else f"https://{domain}/img/{uid}.jpg",
            "publishedAt": iso_z(published),
            "content": f"{content[:197]}… [+{int(rng.integers(800, 6000))} chars]",
        }
        out.append(Article(published, body, float(rng.random())))
    return out


def search(
    seed: int, query: str, start: dt.datetime, end: dt.datetime, sort_by: str
) -> list[Article]:
    """Every article for ``query`` published in ``[start, end]``, in NewsAPI's order."""
    found: list[Article] = []
    day = start.date()
    while day <= end.date():
        found += [a for a in articles_for_day(seed, query, day) if start <= a.published_at <= end]
        day += dt.timedelta(days=1)
    if sort_by == "publishedAt":
        return sorted(found, key=lambda a: a.published_at, reverse=True)
    return sorted(found, key=lambda a: (a.relevance, a.body["url"]), reverse=True)
