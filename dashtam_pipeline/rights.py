"""License rights: which datasets each ``DASHTAM_RIGHTS_PROFILE`` may pull.

Checked before any provider call, so a denied dataset never reaches the provider (a
license violation cannot happen by accident); the asset is skipped with the reason.
"""

from __future__ import annotations

from collections.abc import Mapping

from dashtam_pipeline.errors import ErrorKind, ProviderError
from dashtam_pipeline.registry import Dataset

#: Datasets each profile may NOT pull; everything else is allowed.
DENIED_DATASETS: Mapping[str, frozenset[Dataset]] = {
    "basic": frozenset({Dataset.OPTIONS_CHAIN}),
    "pro": frozenset(),
}


def is_allowed(profile: str, dataset: Dataset) -> bool:
    return dataset not in DENIED_DATASETS.get(profile, frozenset(Dataset))


def check_rights(profile: str, dataset: Dataset, provider: str) -> None:
    """Raise a ``RIGHTS_DENIED`` error when ``profile`` may not pull ``dataset``."""
    if not is_allowed(profile, dataset):
        raise ProviderError(
            provider,
            ErrorKind.RIGHTS_DENIED,
            f"the {profile!r} rights profile does not include {dataset.value}; set "
            "DASHTAM_RIGHTS_PROFILE=pro if your license allows it",
        )
