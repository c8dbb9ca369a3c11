"""Canonical symbols (``BRK.B``) and each provider's spelling of them.

Canonical form is what lands in every ``symbol`` column: upper case, share classes
separated by a dot. Providers that spell classes differently say so in their metadata
(``symbol_class_separator``).
"""

from __future__ import annotations

from dashtam_pipeline.registry import ProviderSlug, get_provider_metadata


def to_provider(symbol: str, provider: ProviderSlug) -> str:
    """``BRK.B`` → ``BRK-B`` for FMP, ``BRK/B`` for Schwab, unchanged where dots are used."""
    canonical = to_canonical(symbol)
    separator = get_provider_metadata(provider).symbol_class_separator
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
