"""The finance-aware sentiment score: direction on finance headlines, the lexicon's effect
over plain VADER, the article weighting, and the [-1, 1] bound."""

from __future__ import annotations

import pytest
from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

from dashtam_pipeline.sentiment import (
    FINANCE_LEXICON,
    FINANCE_PHRASES,
    analyzer,
    score_article,
    score_text,
)
from dashtam_pipeline_tests.payloads import load_json

PLAIN_VADER = SentimentIntensityAnalyzer()


def plain(text: str) -> float:
    return float(PLAIN_VADER.polarity_scores(text)["compound"])


@pytest.mark.parametrize(
    "headline",
    [
        "Apple beats estimates",
        "Nvidia beats estimates and raises guidance as data center sales surge",
        "Microsoft upgraded to outperform at Morgan Stanley",
        "JPMorgan shares soar to record high after blowout quarter",
    ],
)
def test_positive_finance_headlines(headline: str) -> None:
    assert score_text(headline) > 0.3


@pytest.mark.parametrize(
    "headline",
    [
        "Apple misses estimates",
        "Intel plunges after profit warning, announces layoffs",
        "Retailer files for Chapter 11 bankruptcy protection",
        "Exxon downgraded to underperform as crude slumps",
        "JPMorgan sued in class action over fees",
        "Apple cuts jobs amid slowing growth",
    ],
)
def test_negative_finance_headlines(headline: str) -> None:
    assert score_text(headline) < -0.3


@pytest.mark.parametrize(
    "headline",
    [
        "Apple reports quarterly results on Thursday",
        "The Federal Reserve holds interest rates steady",
        "Amazon to hold annual shareholder meeting in May",
    ],
)
def test_neutral_headlines_score_near_zero(headline: str) -> None:
    assert abs(score_text(headline)) < 0.1


@pytest.mark.parametrize(
    ("headline", "plain_verdict", "finance_verdict"),
    [
        # VADER has no "beat" and no "bankruptcy"
        ("Apple beats estimates", 0.0, 1),
        ("Company files for bankruptcy", 0.0, -1),
        # VADER reads "shares" (+1.2) as friendly and has no "fall": positive, wrongly
        ("Apple shares fall", 0.296, -1),
        # VADER's mild "misses" only just leans negative
        ("Apple misses estimates", -0.2263, -1),
    ],
)
def test_finance_terms_change_vaders_verdict(
    headline: str, plain_verdict: float, finance_verdict: int
) -> None:
    assert plain(headline) == pytest.approx(plain_verdict, abs=1e-4)
    score = score_text(headline)
    assert score * finance_verdict > 0.3


def test_phrases_count_as_one_term_with_hyphens_or_spaces() -> None:
    assert score_text("Stocks hit all-time high") == score_text("Stocks hit all time high")
    assert score_text("Company raises guidance") > 0.3
    assert score_text("Company lowers guidance") < -0.3
    assert plain("Company raises guidance") == 0.0  # VADER alone sees nothing


def test_negation_still_applies_to_finance_terms() -> None:
    assert score_text("Apple misses estimates") < 0 < score_text("Apple did not miss estimates")


def test_lexicon_entries_are_in_the_cached_analyzer() -> None:
    assert analyzer() is analyzer()
    vader = analyzer()
    assert vader.lexicon["shares"] == 0.0 == FINANCE_LEXICON["shares"]
    assert vader.lexicon["bankruptcy"] == FINANCE_LEXICON["bankruptcy"] < -3
    assert vader.lexicon["fin_raises_guidance"] == FINANCE_PHRASES["raises guidance"]
    assert all(-4.0 <= v <= 4.0 for v in (*FINANCE_LEXICON.values(), *FINANCE_PHRASES.values()))


@pytest.mark.parametrize("empty", [None, "", "   \r\n "])
def test_empty_text_scores_zero(empty: str | None) -> None:
    assert score_text(empty) == 0.0
    assert score_article(empty, empty, empty) == 0.0


def test_article_is_a_weighted_mean_of_its_parts() -> None:
    title, description, content = (
        "Apple beats estimates", "Shares fall in late trading", "Results were in line."
    )
    t, d, c = score_text(title), score_text(description), score_text(content)
    assert score_article(title, description, content) == pytest.approx(0.5 * t + 0.3 * d + 0.2 * c)
    # missing parts are left out and the weights renormalized
    assert score_article(title, None, content) == pytest.approx((0.5 * t + 0.2 * c) / 0.7)
    assert score_article(title) == pytest.approx(t)


def test_scores_stay_within_bounds() -> None:
    extreme = "BANKRUPTCY!!! Fraud, lawsuits, layoffs, plunge, crash, default!!! " * 20
    assert -1.0 <= score_text(extreme) < -0.9
    assert 0.9 < score_text("Beats! Soars! Upgraded! Record high! Surges!!! " * 20) <= 1.0
    for article in load_json("newsapi/everything_q_rep_issue_pageSize5_relevancy.json")[
        "articles"
    ]:
        score = score_article(article["title"], article["description"], article["content"])
        assert -1.0 <= score <= 1.0
