"""The asset factory: reads the registry and builds every ingestion asset and its checks.

One asset per ``FALLBACK`` dataset (named after its table: ``market/quotes``) and one per
provider of a ``PER_PROVIDER`` dataset (``brokerage/schwab_positions``); a dataset's
``companions`` (rows its fetch returns too) share its step. Each asset's
description, group, owners, kinds, tags, partitions, backfill policy, pool, column schema
and checks come from the registry and the dataset's pandera model. Adding a provider or a
dataset never edits this module.
"""


import dataclasses
import datetime as dt
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    AssetObservation,
    AssetsDefinition,
    AssetSpec,
    Failure,
    MaterializeResult,
    MetadataValue,
    TableColumn,
    TableColumnConstraints,
    TableSchema,
    multi_asset,
)

from dashtam_pipeline.assets.partitions import (
    OBSERVATION_END_TAG,
    OBSERVATION_START_TAG,
    backfill_policy_for,
    file_name_of,
    market_today,
    partitions_for,
)
from dashtam_pipeline.clients.base import FetchRequest
from dashtam_pipeline.errors import ProviderError
from dashtam_pipeline.ingest import IngestionOutcome, ingest_dataset
from dashtam_pipeline.quality import duplicate_key_count, row_count
from dashtam_pipeline.registry import (
    DATASETS,
    DatasetSpec,
    Partitioning,
    ProviderMetadata,
    Sourcing,
    providers_serving,
)
from dashtam_pipeline.resilience.dlq import DeadLetterQueue
from dashtam_pipeline.resilience.hooks import provider_health
from dashtam_pipeline.resources import StorageResource, provider_resource_key
from dashtam_pipeline.schemas import SCHEMAS
from dashtam_pipeline.schemas.base import duckdb_columns
from dashtam_pipeline.settings import Settings, load_settings

OWNERS = ["team:data-platform"]
#: How far back un-partitioned activity datasets (transactions) look on each run.
LOOKBACK_DAYS = 90
VALID_ROWS_CHECK = "valid_rows"
UNIQUE_KEYS_CHECK = "unique_keys"
NOT_STALE_CHECK = "not_stale"


@dataclass(frozen=True)
class IngestionAssetSpec:
    """One generated asset: a dataset and the provider(s) that feed it."""

    dataset: DatasetSpec
    providers: tuple[ProviderMetadata, ...]
    name: str

    @property
    def key(self) -> AssetKey:
        return AssetKey([self.dataset.domain.value, self.name])

    @property
    def partitioning(self) -> Partitioning:
        """The dataset's partitioning, or the provider's override for a per-provider asset
        (a file import is partitioned by inbox file)."""
        if self.dataset.sourcing is Sourcing.PER_PROVIDER:
            return self.providers[0].partitioning_of(self.dataset)
        return self.dataset.partitioning

    @property
    def single_provider_label(self) -> str | None:
        """For per-provider assets: the provider whose rows this asset owns."""
        if self.dataset.sourcing is Sourcing.PER_PROVIDER:
            return self.providers[0].slug.value
        return None


def ingestion_asset_specs() -> list[IngestionAssetSpec]:
    """Every ingestion asset the registry implies, in registry order."""
    specs: list[IngestionAssetSpec] = []
    for dataset in DATASETS:
        providers = tuple(providers_serving(dataset.dataset))
        if not providers:
            continue
        if dataset.sourcing is Sourcing.FALLBACK:
            specs.append(IngestionAssetSpec(dataset, providers, dataset.table_name))
        else:
            specs.extend(
                IngestionAssetSpec(dataset, (p,), f"{p.slug.value}_{dataset.table_name}")
                for p in providers
            )
    return specs


def column_schema(dataset: DatasetSpec) -> TableSchema:
    """The contract columns and key, from the pandera model, for the UI's schema tab."""
    model = SCHEMAS[dataset.dataset]
    schema = model.to_schema()
    return TableSchema(
        columns=[
            TableColumn(
                name=name,
                type=kind,
                description=" ".join(filter(None, [
                    "key column." if name in dataset.key else "",
                    (column.description or ""),
                ])) or None,
                constraints=TableColumnConstraints(
                    nullable=column.nullable,
                    unique=False,
                    other=[str(check) for check in column.checks],
                ),
            )
            for (name, kind), column in zip(
                duckdb_columns(model).items(), schema.columns.values(), strict=True
            )
        ],
    )


def _description(asset_spec: IngestionAssetSpec) -> str:
    dataset = asset_spec.dataset
    names = " → ".join(p.display_name for p in asset_spec.providers)
    how = "fallback order" if len(asset_spec.providers) > 1 else "source"
    return (
        f"{dataset.description}\n\nWarehouse table `{dataset.table}` (key: "
        f"{', '.join(dataset.key)}). {how.capitalize()}: {names}. Rows failing the "
        "`valid_rows` checks are kept in `ops.quarantine` with their reason."
    )


def build_request(
    dataset: DatasetSpec,
    context: AssetExecutionContext,
    settings: Settings,
    *,
    partitioning: Partitioning | None = None,
) -> FetchRequest:
    """The provider request for this run's partition(s) and the configured universe.

    ``partitioning`` is the asset's own (``IngestionAssetSpec.partitioning``) when a
    provider overrides the dataset's.
    """
    partitioning = partitioning or dataset.partitioning
    common = {
        "symbols": settings.dashtam_symbols,
        "queries": settings.news_queries,
        "series_ids": settings.dashtam_fred_series,
    }
    today = market_today()
    if partitioning is Partitioning.INBOX_FILE and (
        context.has_partition_key or context.has_partition_key_range
    ):
        # each partition is one inbox file; a run without one (a job over the whole
        # group) falls through to the look-back request: every file in the inbox
        keys = tuple(context.partition_keys)
        return FetchRequest(
            **common, start=today - dt.timedelta(days=LOOKBACK_DAYS), end=today, as_of=today,
            partition_key=keys[0] if len(keys) == 1 else f"{keys[0]}...{keys[-1]}",
            files=tuple(file_name_of(key) for key in keys),
        )
    if partitioning is Partitioning.TRADING_DAY:
        window = context.partition_time_window
        start = window.start.date()
        end = window.end.date() - dt.timedelta(days=1)
        key = (
            context.partition_key
            if start == end
            else f"{context.partition_key_range.start}...{context.partition_key_range.end}"
        )
        return FetchRequest(start=start, end=end, as_of=end, partition_key=key, **common)
    if partitioning is Partitioning.FRED_SERIES:
        keys = tuple(context.partition_keys)
        key = keys[0] if len(keys) == 1 else f"{keys[0]}...{keys[-1]}"
        tags = context.run.tags
        first = _tag_date(tags, OBSERVATION_START_TAG)
        last = _tag_date(tags, OBSERVATION_END_TAG)
        if first and last and first > last:
            raise Failure(
                description=f"run tags {OBSERVATION_START_TAG}={first} is after "
                f"{OBSERVATION_END_TAG}={last}",
                allow_retries=False,
            )
        return FetchRequest(
            **{**common, "series_ids": keys}, as_of=market_today(), partition_key=key,
            start=first, end=last,
        )
    return FetchRequest(
        start=today - dt.timedelta(days=LOOKBACK_DAYS), end=today, as_of=today, **common
    )


def _tag_date(tags: Mapping[str, str], name: str) -> dt.date | None:
    """A date run tag (a FRED backfill's observation window), or None when unset."""
    text = (tags.get(name) or "").strip()
    if not text:
        return None
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise Failure(
            description=f"run tag {name}={text!r} is not a date (YYYY-MM-DD)",
            allow_retries=False,
        ) from None


def _materialize_result(
    asset_spec: IngestionAssetSpec,
    outcome: IngestionOutcome,
    storage: StorageResource,
    settings: Settings,
) -> MaterializeResult:
    dataset = asset_spec.dataset
    lake_root = storage.lake().root
    duplicates = duplicate_key_count(lake_root, dataset.table, dataset.key)
    owned_by = outcome.served_by if asset_spec.single_provider_label else None
    validation = outcome.validation
    failures = dict(validation.failures_by_check) if validation else {}
    calls = outcome.calls.summary()
    metadata = {
        "table": MetadataValue.text(dataset.table),
        "dagster/row_count": MetadataValue.int(
            row_count(lake_root, dataset.table, provider=owned_by)
        ),
        "dagster/column_schema": column_schema(dataset),
        "rows_written": MetadataValue.int(outcome.rows_landed),
        "rows_inserted": MetadataValue.int(outcome.write.rows_inserted if outcome.write else 0),
        "rows_quarantined": MetadataValue.int(outcome.quarantined),
        "duplicates_dropped": MetadataValue.int(
            validation.duplicates_dropped if validation else 0
        ),
        "served_by": MetadataValue.text(outcome.served_by or ""),
        "is_stale": MetadataValue.bool(outcome.stale),
        "fallback": MetadataValue.json(
            [{"provider": a.provider, "outcome": a.outcome, "detail": a.detail}
             for a in outcome.attempts]
        ),
        **{k: MetadataValue.float(float(v)) if "latency" in k else MetadataValue.int(int(v))
           for k, v in calls.items()},
    }
    for meta in asset_spec.providers:
        if meta.default_base_url is not None:  # file imports make no calls
            metadata[f"provider_{meta.slug.value}"] = MetadataValue.json(
                provider_health(settings, meta.slug)
            )
    if outcome.notes:
        metadata["notes"] = MetadataValue.md("\n".join(f"- {n}" for n in outcome.notes[:50]))
    return MaterializeResult(
        asset_key=asset_spec.key,
        metadata=metadata,
        check_results=[
            AssetCheckResult(
                asset_key=asset_spec.key,
                check_name=VALID_ROWS_CHECK,
                passed=outcome.quarantined == 0,
                severity=AssetCheckSeverity.WARN,
                metadata={
                    "rows_quarantined": outcome.quarantined,
                    "failures_by_check": MetadataValue.json(failures),
                },
                description=(
                    "every fetched row passed the schema"
                    if outcome.quarantined == 0
                    else f"{outcome.quarantined} row(s) quarantined in ops.quarantine"
                ),
            ),
            AssetCheckResult(
                asset_key=asset_spec.key,
                check_name=UNIQUE_KEYS_CHECK,
                passed=duplicates == 0,
                severity=AssetCheckSeverity.ERROR,
                metadata={"duplicate_keys": duplicates, "key": ", ".join(dataset.key)},
            ),
            *(
                [
                    AssetCheckResult(
                        asset_key=asset_spec.key,
                        check_name=NOT_STALE_CHECK,
                        passed=not outcome.stale,
                        severity=AssetCheckSeverity.WARN,
                        description=outcome.stale_reason or "served by a live provider",
                    )
                ]
                if dataset.serves_stale
                else []
            ),
        ],
    )


def check_specs_for(asset_spec: IngestionAssetSpec) -> list[AssetCheckSpec]:
    """The checks of an ingestion asset: schema validity (WARN), unique keys (blocking),
    and for datasets that can serve last good values, freshness (WARN)."""
    dataset = asset_spec.dataset
    specs = [
        AssetCheckSpec(
            VALID_ROWS_CHECK,
            asset=asset_spec.key,
            description=(
                "Every fetched row passes the dataset's pandera schema; failing rows "
                "are quarantined (WARN: good rows still land)."
            ),
        ),
        AssetCheckSpec(
            UNIQUE_KEYS_CHECK,
            asset=asset_spec.key,
            blocking=True,
            description=f"The key ({', '.join(dataset.key)}) is unique in {dataset.table}.",
        ),
    ]
    if dataset.serves_stale:
        specs.append(
            AssetCheckSpec(
                NOT_STALE_CHECK,
                asset=asset_spec.key,
                description=(
                    "A live provider served this materialization (WARN: when every provider "
                    "is down the last good values are served with is_stale = true)."
                ),
            )
        )
    return specs


def _partition_keys(context: AssetExecutionContext) -> list[str | None]:
    """Every partition this run covers (``[None]`` for unpartitioned assets)."""
    if context.has_partition_key or context.has_partition_key_range:
        return list(context.partition_keys)
    return [None]


def _dead_letter(
    dlq: DeadLetterQueue,
    asset_spec: IngestionAssetSpec,
    partitions: list[str | None],
    request: FetchRequest,
    error: ProviderError,
    run_id: str,
) -> None:
    """One dead letter per partition that did not get live data, so a replay re-runs
    exactly those partitions."""
    summary = {k: v for k, v in dataclasses.asdict(request).items() if v not in ((), None)}
    for partition in partitions:
        dlq.record_failure(
            asset_spec.key.to_user_string(), asset_spec.dataset.table, error.provider,
            partition, {**summary, "partition_key": partition}, error, run_id=run_id,
        )


def _asset_spec(asset_spec: IngestionAssetSpec) -> AssetSpec:
    dataset = asset_spec.dataset
    primary = asset_spec.providers[0].slug.value
    tags = {"dashtam/dataset": dataset.dataset.value, "dashtam/provider": primary}
    if len(asset_spec.providers) > 1:
        tags["dashtam/fallback"] = "-".join(p.slug.value for p in asset_spec.providers[1:])
    return AssetSpec(
        key=asset_spec.key,
        group_name=dataset.domain.value,
        description=_description(asset_spec),
        owners=OWNERS,
        kinds={"python", "parquet", "duckdb"},
        tags=tags,
        metadata={
            "table": dataset.table,
            "key": ", ".join(dataset.key),
            "dagster/column_schema": column_schema(dataset),
            "dagster/table_name": f"warehouse.{dataset.table}",
        },
        skippable=True,
    )


def build_ingestion_asset(
    asset_spec: IngestionAssetSpec,
    settings: Settings,
    companions: Sequence[IngestionAssetSpec] = (),
) -> AssetsDefinition:
    """One Dagster step for ``asset_spec`` and its ``companions`` (the datasets its fetch
    also returns), wired to its provider resources and every member's checks.

    With the lead asset selected, one fetch lands every selected member; a companion
    selected alone is fetched on its own (``macro/fred_series`` asks only ``/series``).
    """
    members = [asset_spec, *companions]
    providers = asset_spec.providers
    resource_keys = {"storage", *(provider_resource_key(p.slug) for p in providers)}
    primary = providers[0].slug.value

    # A multi_asset of skippable specs with can_subset: when a provider is skipped the
    # step yields nothing, and its checks must then be optional outputs too.
    @multi_asset(
        specs=[_asset_spec(member) for member in members],
        name="__".join(asset_spec.key.path),
        partitions_def=partitions_for(asset_spec.partitioning, settings, owner=primary),
        backfill_policy=backfill_policy_for(asset_spec.partitioning),
        required_resource_keys=resource_keys,
        pool=providers[0].pool,
        can_subset=True,
        check_specs=[check for member in members for check in check_specs_for(member)],
    )
    def _ingest(context: AssetExecutionContext) -> Iterator[MaterializeResult]:
        chosen = [m for m in members if m.key in context.selected_asset_keys]
        if asset_spec in chosen:
            plan = [(asset_spec, chosen[1:])]
        else:
            plan = [(member, []) for member in chosen]
        for lead, extras in plan:
            yield from _run_ingestion(context, lead, extras)

    return _ingest


def _run_ingestion(
    context: AssetExecutionContext,
    lead: IngestionAssetSpec,
    extras: Sequence[IngestionAssetSpec],
) -> Iterator[MaterializeResult]:
    """Fetch ``lead`` (landing ``extras`` from the same fetch), record dead letters or
    resolve them, and report one materialization per member with its checks."""
    run_settings = load_settings()
    storage: StorageResource = context.resources.storage
    request = build_request(lead.dataset, context, run_settings, partitioning=lead.partitioning)
    resources = context.resources

    def client_factory(slug, s, **kw):  # type: ignore[no-untyped-def]
        return getattr(resources, provider_resource_key(slug)).client(
            s, run_id=context.run_id, **kw)

    dlq = DeadLetterQueue.from_settings(run_settings)
    partitions = _partition_keys(context)
    try:
        outcome = ingest_dataset(
            lead.dataset, lead.providers, request, run_settings, storage.lake(),
            client_factory=client_factory, companions=[e.dataset for e in extras],
        )
    except ProviderError as error:
        for member in (lead, *extras):  # every asset the step owed a materialization
            _dead_letter(dlq, member, partitions, request, error, context.run_id)
        raise Failure(
            description=str(error),
            metadata={
                "provider": error.provider,
                "error_kind": error.kind.value,
                "retryable": error.retryable,
                "dead_letters": len(partitions) * (1 + len(extras)),
            },
            allow_retries=error.retryable,
        ) from None
    if outcome.stale and outcome.failure is not None:
        _dead_letter(dlq, lead, partitions, request, outcome.failure, context.run_id)
    elif not outcome.skipped:
        for member in (lead, *extras):
            for entry in dlq.resolve(member.key.to_user_string(), partitions, context.run_id):
                context.log.info(f"dead letter {entry.id} resolved: its partition landed")
    for note in outcome.notes:
        context.log.info(note)
    if outcome.skipped:
        for member in (lead, *extras):
            context.log.warning(f"{member.key.to_user_string()} skipped: {outcome.skipped_reason}")
            context.log_event(
                AssetObservation(
                    asset_key=member.key,
                    partition=request.partition_key if context.has_partition_key else None,
                    metadata={"skipped": MetadataValue.text(outcome.skipped_reason or "")},
                )
            )
        return
    storage.warehouse().ensure_views()
    selected_checks = {(c.asset_key, c.name) for c in context.selected_asset_check_keys}
    landed = [(lead, outcome), *((e, outcome.companions[e.dataset.dataset]) for e in extras)]
    for member, member_outcome in landed:
        result = _materialize_result(member, member_outcome, storage, run_settings)
        yield result._replace(
            check_results=[
                c for c in result.check_results or []
                if (member.key, c.check_name) in selected_checks
            ]
        )


def build_ingestion_assets(settings: Settings | None = None) -> list[AssetsDefinition]:
    """One step per asset, except that a dataset's companions share its step."""
    settings = settings or load_settings()
    specs = ingestion_asset_specs()
    companion_datasets = {c for spec in specs for c in spec.dataset.companions}
    return [
        build_ingestion_asset(
            spec, settings, [c for c in specs if c.dataset.dataset in spec.dataset.companions]
        )
        for spec in specs
        if spec.dataset.dataset not in companion_datasets
    ]
