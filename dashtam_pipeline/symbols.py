"""Canonical symbols (``BRK.B``) and each provider's spelling of them.

Canonical form is what lands in every ``symbol`` column: upper case, share classes
separated by a dot. Providers that spell classes differently are listed here, once.
"""

from __future__ import annotations

from dashtam_pipeline.registry import ProviderSlug

#: Share-class separator each provider uses instead of the canonical ``.``.
_CLASS_SEPARATOR: dict[ProviderSlug, str] = {
    ProviderSlug.FMP: "-",
    ProviderSlug.POLYGON: ".",
    ProviderSlug.ALPACA: ".",
    ProviderSlug.SCHWAB: "/",
    ProviderSlug.NEWSAPI: ".",
}


def to_provider(symbol: str, provider: ProviderSlug) -> str:
    """``BRK.B`` → ``BRK-B`` for FMP, ``BRK/B`` for Schwab, unchanged where dots are used."""
    canonical = to_canonical(symbol)
    separator = _CLASS_SEPARATOR.get(provider, ".")
    return canonical.replace(".", separator)


def to_canonical(symbol: str, provider: ProviderSlug | None = None) -> str:
    """Any provider's spelling back to canonical: strip, upper-case, class separator → ``.``.

    Option contracts and other symbols with spaces are kept apart from share classes:
    only a single separator between letters is treated as a class marker.
    """
    text = symbol.strip().upper()
    if " " in text:
        return text
    for separator in ("-", "/"):
        head, sep, tail = text.partition(separator)
        if sep and head.isalpha() and tail.isalpha() and 1 <= len(tail) <= 2:
            return f"{head}.{tail}"
    return text
