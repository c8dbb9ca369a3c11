"""A finance-aware sentiment score in [-1, 1] for news articles.

General-purpose sentiment lexicons read financial news badly (Loughran & McDonald, 2011):
"Apple beats estimates" has no sentiment word at all for them, and "Apple shares fall" comes
out *positive* because "share" is a friendly word in everyday English. This module keeps
VADER's rules (negation, intensifiers, "but", capitals, punctuation) and corrects its
vocabulary with a small finance lexicon.

How the score is computed
-------------------------
1. The analyzer is VADER (``vaderSentiment``'s ``SentimentIntensityAnalyzer``) whose lexicon
   is updated with ``FINANCE_LEXICON`` below (valences on VADER's -4..+4 scale). The finance
   entries win over VADER's own: they add finance terms VADER lacks (beat, downgrade,
   plunge, layoffs, bankruptcy...), strengthen terms VADER under-rates (misses, warns), and
   set to 0 words that are neutral in finance but not in everyday English (shares,
   interest, credit, debt, crude, liability, securities...).
2. Multi-word finance phrases in ``FINANCE_PHRASES`` ("raises guidance", "profit
   warning", "chapter 11"...) are matched case-insensitively (spaces or hyphens between
   words) and replaced by one token each before VADER reads the text, because VADER's
   lexicon only holds single words. The tokens carry the phrase's valence.
3. ``score_text(text)`` is VADER's ``compound`` score of the text: the sum ``s`` of the
   word valences after VADER's rules, normalized as ``s / sqrt(s * s + 15)``, so it lies in
   [-1, 1]. Empty or missing text scores 0.0.
4. ``score_article(title, description, content)`` is the weighted mean of the
   ``score_text`` of each non-empty part, with weights title 0.5, description 0.3 and
   content 0.2, renormalized over the parts present (a headline-only article scores as its
   headline). A weighted mean of values in [-1, 1] stays in [-1, 1]. Scoring the parts
   separately keeps a long body from drowning the headline, which carries the news.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from functools import cache

from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

#: Single-word finance terms and their valence on VADER's -4..+4 scale, in the spirit of
#: the Loughran-McDonald finance word lists. 0.0 neutralizes a word VADER scores but
#: finance news uses neutrally.
FINANCE_LEXICON: Mapping[str, float] = {
    # results against expectations
    "beat": 1.8, "beats": 1.8, "topped": 1.5, "exceed": 1.5, "exceeds": 1.5,
    "exceeded": 1.5, "miss": -1.8, "misses": -1.8, "missed": -1.8, "shortfall": -1.8,
    "outperform": 1.8, "outperforms": 1.8, "outperformed": 1.8,
    "underperform": -1.8, "underperforms": -1.8, "underperformed": -1.8,
    # analyst actions
    "upgrade": 2.0, "upgrades": 2.0, "upgraded": 2.0,
    "downgrade": -2.0, "downgrades": -2.0, "downgraded": -2.0,
    "bullish": 2.0, "bearish": -2.0, "upbeat": 1.8,
    # price moves
    "surge": 2.0, "surges": 2.0, "surged": 2.0, "soar": 2.2, "soars": 2.2, "soared": 2.2,
    "jump": 1.5, "jumps": 1.5, "jumped": 1.5, "rally": 1.8, "rallies": 1.8, "rallied": 1.8,
    "rebound": 1.3, "rebounds": 1.3, "rebounded": 1.3, "climb": 1.0, "climbs": 1.0,
    "climbed": 1.0, "rise": 1.0, "rises": 1.0, "rose": 1.0,
    "plunge": -2.5, "plunges": -2.5, "plunged": -2.5, "plummet": -2.6, "plummets": -2.6,
    "plummeted": -2.6, "tumble": -2.0, "tumbles": -2.0, "tumbled": -2.0,
    "slump": -2.0, "slumps": -2.0, "slumped": -2.0, "sink": -1.5, "sinks": -1.5,
    "sank": -1.5, "slide": -1.2, "slides": -1.2, "slid": -1.2, "fall": -1.5,
    "falls": -1.5, "fell": -1.5, "drops": -1.2, "dropped": -1.2, "decline": -1.3,
    "declines": -1.3, "declined": -1.3, "selloff": -2.0, "sell-off": -2.0, "rout": -2.2,
    "crash": -2.5, "crashes": -2.5, "crashed": -2.5,
    # corporate events
    "buyback": 1.2, "buybacks": 1.2, "profitable": 1.8, "tailwind": 1.2, "tailwinds": 1.2,
    "headwind": -1.2, "headwinds": -1.2, "layoff": -2.2, "layoffs": -2.2,
    "restatement": -2.0, "restates": -1.8, "impairment": -1.8, "writedown": -1.8,
    "write-down": -1.8, "recall": -1.5, "recalls": -1.5, "warns": -1.5, "warned": -1.5,
    "delisting": -2.5, "delisted": -2.5,
    # distress and legal trouble
    "bankruptcy": -3.2, "bankrupt": -3.2, "insolvency": -3.0, "insolvent": -3.0,
    "liquidation": -2.5, "default": -2.2, "defaults": -2.2, "defaulted": -2.5,
    "lawsuit": -1.8, "lawsuits": -1.8, "sued": -1.8, "sues": -1.8, "litigation": -1.5,
    "subpoena": -2.0, "probe": -1.5, "investigation": -1.3, "fined": -1.8,
    # neutral in finance, not in everyday English
    "share": 0.0, "shares": 0.0, "interest": 0.0, "credit": 0.0, "debt": 0.0,
    "crude": 0.0, "liability": 0.0, "liabilities": 0.0, "gross": 0.0, "security": 0.0,
    "securities": 0.0, "trust": 0.0, "united": 0.0, "amazon": 0.0, "demand": 0.0,
    "pay": 0.0, "natural": 0.0, "free": 0.0, "care": 0.0, "value": 0.0, "worth": 0.0,
}

#: Multi-word finance phrases and their valence; each is read as one token (see step 2).
FINANCE_PHRASES: Mapping[str, float] = {
    "raises guidance": 2.2, "raised guidance": 2.2, "guidance raised": 2.2,
    "boosts guidance": 2.2, "lifts guidance": 2.2, "raises outlook": 2.2,
    "lowers guidance": -2.2, "lowered guidance": -2.2, "cuts guidance": -2.2,
    "guidance cut": -2.2, "slashes guidance": -2.5, "lowers outlook": -2.2,
    "cuts outlook": -2.2, "profit warning": -2.5, "going concern": -2.5,
    "chapter 11": -3.2, "class action": -1.8, "data breach": -2.0, "short seller": -1.2,
    "price target raised": 1.5, "raises price target": 1.5, "price target cut": -1.5,
    "cuts price target": -1.5, "dividend cut": -2.0, "cuts dividend": -2.0,
    "dividend hike": 1.8, "raises dividend": 1.8, "record high": 2.0, "all time high": 2.0,
    "record low": -2.0, "fell short": -1.8, "falls short": -1.8,
    "cuts jobs": -2.2, "job cuts": -2.2, "slowing growth": -1.5, "slowing demand": -1.5,
}


def _phrase_token(phrase: str) -> str:
    """The single token a phrase is replaced with (VADER keeps underscores inside words)."""
    return "fin_" + "_".join(phrase.split())


_PHRASE_RE = re.compile(
    r"\b(?:"
    + "|".join(
        r"[\s\-]+".join(re.escape(word) for word in phrase.split())
        for phrase in sorted(FINANCE_PHRASES, key=len, reverse=True)
    )
    + r")\b",
    re.IGNORECASE,
)

_TITLE_WEIGHT, _DESCRIPTION_WEIGHT, _CONTENT_WEIGHT = 0.5, 0.3, 0.2


@cache
def analyzer() -> SentimentIntensityAnalyzer:
    """VADER with the finance lexicon, built once per process (loading it is slow)."""
    vader = SentimentIntensityAnalyzer()
    vader.lexicon.update(FINANCE_LEXICON)
    vader.lexicon.update({_phrase_token(p): v for p, v in FINANCE_PHRASES.items()})
    return vader


def _mark_phrases(text: str) -> str:
    def token(match: re.Match[str]) -> str:
        return _phrase_token(" ".join(re.split(r"[\s\-]+", match.group(0).lower())))

    return _PHRASE_RE.sub(token, text)


def score_text(text: str | None) -> float:
    """VADER's compound score of ``text`` with the finance lexicon, in [-1, 1]; 0.0 for
    empty or missing text."""
    if text is None or not text.strip():
        return 0.0
    compound = float(analyzer().polarity_scores(_mark_phrases(text))["compound"])
    if math.isnan(compound):
        return 0.0
    return min(1.0, max(-1.0, compound))


def score_article(
    title: str | None, description: str | None = None, content: str | None = None
) -> float:
    """Weighted mean of the parts' scores (title 0.5, description 0.3, content 0.2),
    renormalized over the non-empty parts; 0.0 when every part is empty."""
    parts = [
        (weight, text)
        for weight, text in (
            (_TITLE_WEIGHT, title), (_DESCRIPTION_WEIGHT, description), (_CONTENT_WEIGHT, content)
        )
        if text is not None and text.strip()
    ]
    total = sum(weight for weight, _ in parts)
    if not total:
        return 0.0
    return sum(weight * score_text(text) for weight, text in parts) / total
