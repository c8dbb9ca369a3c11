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
from typing import Any

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
    TableSchema,
    multi_asset,
)

from dashtam_pipeline.assets.metadata import (
    PartitionNumbers,
    call_metadata,
    frame_partition_counts,
    model_column_schema,
    partition_expression,
    partition_value,
    quarantined_per_partition,
)
from dashtam_pipeline.assets.partitions import (
    OBSERVATION_END_TAG,
    OBSERVATION_START_TAG,
    backfill_policy_for,
    file_name_of,
    market_today,
    partitions_for,
)
from dashtam_pipeline.assets.sources import (
    fallback_order_text,
    provider_asset_key,
    provider_observation,
)
from dashtam_pipeline.clients.base import FetchRequest
from dashtam_pipeline.errors import ProviderError
from dashtam_pipeline.http import CallStats
from dashtam_pipeline.ingest import ConnectionsFailed, IngestionOutcome, ingest_dataset
from dashtam_pipeline.quality import duplicate_key_count, partition_row_counts, row_count
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
from dashtam_pipeline.resources import (
    STATE_RESOURCE_KEY,
    STORAGE_RESOURCE_KEY,
    StateStoreResource,
    StorageResource,
    provider_resource_key,
    settings_from,
)
from dashtam_pipeline.schemas import SCHEMAS
from dashtam_pipeline.settings import Settings, load_settings

OWNERS = ["team:data-platform"]
#: How far back un-partitioned activity datasets (transactions) look on each run.
LOOKBACK_DAYS = 90
VALID_ROWS_CHECK = "valid_rows"
UNIQUE_KEYS_CHECK = "unique_keys"
NOT_STALE_CHECK = "not_stale"
#: Run tags of a run in which assets were skipped (see ``_record_skip``).
SKIPPED_TAG = "dashtam/skipped"
OUTCOME_TAG = "dashtam/outcome"


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
    """The contract columns and key, from the pandera model, for the UI's schema tab:
    DuckDB types, analyst descriptions and readable constraints (``assets.metadata``)."""
    return model_column_schema(SCHEMAS[dataset.dataset], dataset.key)


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
            partition_key=_key_label(keys), files=tuple(file_name_of(key) for key in keys),
        )
    if partitioning is Partitioning.CONNECTION and (
        context.has_partition_key or context.has_partition_key_range
    ):
        # each partition is one connection; a run without one syncs every connection
        keys = tuple(context.partition_keys)
        return FetchRequest(
            **common, start=today - dt.timedelta(days=LOOKBACK_DAYS), end=today, as_of=today,
            partition_key=_key_label(keys), connection_ids=keys,
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
        key = _key_label(keys)
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


def _key_label(keys: Sequence[str]) -> str:
    """How a run names its partitions: the one key, or ``first...last``."""
    return keys[0] if len(keys) == 1 else f"{keys[0]}...{keys[-1]}"


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
    context: AssetExecutionContext,
) -> MaterializeResult:
    """The asset's materialization: run-wide metadata on the result, and each partition's
    own numbers added per partition (``context.add_asset_metadata``), so a partition of a
    25-series or 31-day run shows its own row count, not the run's."""
    dataset = asset_spec.dataset
    lake_root = storage.root() / "lake"  # read only: no lock
    duplicates = duplicate_key_count(lake_root, dataset.table, dataset.key)
    owned_by = outcome.served_by if asset_spec.single_provider_label else None
    validation = outcome.validation
    failures = dict(validation.failures_by_check) if validation else {}
    calls = outcome.calls.summary()
    table_rows = row_count(lake_root, dataset.table, provider=owned_by)
    partitions = [p for p in _partition_keys(context) if p is not None]
    # A partition's own numbers first: Dagster keeps the result's key order and lets each
    # partition's values (``_add_partition_metadata``) replace these run-wide ones.
    own = PartitionNumbers(table_rows, outcome.rows_landed, outcome.quarantined)
    metadata: dict[str, Any] = {
        **own.metadata(None if partitions else calls),
        "table": MetadataValue.text(dataset.table),
        "table_row_count": MetadataValue.int(table_rows),
        "dagster/column_schema": column_schema(dataset),
        "run_rows_written": MetadataValue.int(outcome.rows_landed),
        "run_rows_inserted": MetadataValue.int(
            outcome.write.rows_inserted if outcome.write else 0
        ),
        "run_rows_quarantined": MetadataValue.int(outcome.quarantined),
        "duplicates_dropped": MetadataValue.int(
            validation.duplicates_dropped if validation else 0
        ),
        "served_by": MetadataValue.text(outcome.served_by or ""),
        "is_stale": MetadataValue.bool(outcome.stale),
        "fallback": MetadataValue.json(
            [{"provider": a.provider, "outcome": a.outcome, "detail": a.detail}
             for a in outcome.attempts]
        ),
        **call_metadata(calls, prefix="run_"),
    }
    if partitions:
        metadata["run_partitions"] = MetadataValue.int(len(partitions))
        _add_partition_metadata(
            context, asset_spec, outcome, lake_root, partitions, owned_by,
            calls if len(partitions) == 1 else None,
        )
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


def _add_partition_metadata(
    context: AssetExecutionContext,
    asset_spec: IngestionAssetSpec,
    outcome: IngestionOutcome,
    lake_root: Any,
    partitions: list[str],
    owned_by: str | None,
    calls: Mapping[str, Any] | None,
) -> None:
    """Each partition's own row count (its rows in the table), rows written and rows
    quarantined by this run; its calls only when the run's calls were all its own."""
    dataset = asset_spec.dataset
    expression = partition_expression(dataset, asset_spec.partitioning)
    if expression is None:
        return
    in_table = partition_row_counts(lake_root, dataset.table, expression, provider=owned_by)
    valid = outcome.validation.valid if outcome.validation else None
    written = frame_partition_counts(valid, expression) if valid is not None else {}
    records = outcome.validation.quarantined if outcome.validation else []
    quarantined, _unattributed = quarantined_per_partition(records, partitions, expression)
    if len(partitions) == 1:  # rejected responses/files of a one-partition run are its own
        quarantined[partitions[0]] = outcome.quarantined
    for key in partitions:
        value = partition_value(asset_spec.partitioning, key)
        numbers = PartitionNumbers(
            row_count=in_table.get(value, 0),
            rows_written=written.get(value, 0),
            rows_quarantined=quarantined.get(key, 0),
        )
        context.add_asset_metadata(
            numbers.metadata(calls), asset_key=asset_spec.key, partition_key=key
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


def _failed_partitions(partitions: list[str | None], error: ProviderError) -> list[str | None]:
    """The partitions a failed run owes: of a run of connection partitions, those whose
    connection failed (the others landed); else every partition of the run."""
    if isinstance(error, ConnectionsFailed) and partitions != [None]:
        failed = [p for p in partitions if p in error.connection_ids]
        return failed or partitions
    return partitions


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
    order: dict[str, Any] = {}
    if len(asset_spec.providers) > 1:
        tags["dashtam/fallback"] = "-".join(p.slug.value for p in asset_spec.providers[1:])
        order["fallback_order"] = fallback_order_text(asset_spec.providers)
    return AssetSpec(
        key=asset_spec.key,
        deps=[provider_asset_key(p.slug.value) for p in asset_spec.providers],
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
            **order,
        },
        skippable=True,
    )


def step_name(asset_spec: IngestionAssetSpec, companions: Sequence[IngestionAssetSpec]) -> str:
    """The step's name says everything it computes: ``market__quotes``, or for a dataset
    landed with its companions ``macro__fred_observations_and_fred_series`` (so
    materializing ``macro/fred_series`` alone does not show a step named after the
    observations only)."""
    return "__".join(asset_spec.key.path) + "".join(f"_and_{c.name}" for c in companions)


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
    resource_keys = {STORAGE_RESOURCE_KEY, STATE_RESOURCE_KEY,
                     *(provider_resource_key(p.slug) for p in providers)}
    primary = providers[0].slug.value

    # A multi_asset of skippable specs with can_subset: when a provider is skipped the
    # step yields nothing, and its checks must then be optional outputs too.
    @multi_asset(
        specs=[_asset_spec(member) for member in members],
        name=step_name(asset_spec, companions),
        partitions_def=partitions_for(asset_spec.partitioning, settings, owner=primary),
        backfill_policy=backfill_policy_for(asset_spec.partitioning, settings),
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
    storage: StorageResource = context.resources.storage
    state: StateStoreResource = context.resources.state
    run_settings = settings_from(storage, state)  # the run's own: config over environment
    request = build_request(lead.dataset, context, run_settings, partitioning=lead.partitioning)
    resources = context.resources

    def client_factory(slug, s, **kw):  # type: ignore[no-untyped-def]
        return getattr(resources, provider_resource_key(slug)).client(
            s, run_id=context.run_id, **kw)

    dlq = DeadLetterQueue.from_settings(run_settings)
    partitions = _partition_keys(context)
    try:
        outcome = ingest_dataset(
            lead.dataset, lead.providers, request, run_settings, storage.lake(run_settings),
            client_factory=client_factory, companions=[e.dataset for e in extras],
        )
    except ProviderError as error:
        _observe_providers(
            context, lead, run_settings, {error.provider: (error.kind.value, str(error))}, None
        )
        failed = _failed_partitions(partitions, error)
        for member in (lead, *extras):  # every asset the step owed a materialization
            _dead_letter(dlq, member, failed, request, error, context.run_id)
        raise Failure(
            description=str(error),
            metadata={
                "provider": error.provider,
                "error_kind": error.kind.value,
                "retryable": error.retryable,
                "dead_letters": len(failed) * (1 + len(extras)),
            },
            allow_retries=error.retryable,
        ) from None
    _observe_providers(
        context, lead, run_settings,
        {a.provider: (a.outcome, a.detail) for a in outcome.attempts}, outcome.calls,
    )
    if outcome.stale and outcome.failure is not None:
        _dead_letter(dlq, lead, partitions, request, outcome.failure, context.run_id)
    elif not outcome.skipped:
        for member in (lead, *extras):
            for entry in dlq.resolve(member.key.to_user_string(), partitions, context.run_id):
                context.log.info(f"dead letter {entry.id} resolved: its partition landed")
    for note in outcome.notes:
        context.log.info(note)
    if outcome.skipped:
        _record_skip(context, (lead, *extras), outcome.skipped_reason or "skipped")
        return
    storage.warehouse(run_settings).ensure_views()
    selected_checks = {(c.asset_key, c.name) for c in context.selected_asset_check_keys}
    landed = [(lead, outcome), *((e, outcome.companions[e.dataset.dataset]) for e in extras)]
    for member, member_outcome in landed:
        if member is not lead and not member_outcome.calls.records:
            member_outcome.calls = outcome.calls  # a companion came with the lead's calls
        result = _materialize_result(member, member_outcome, storage, run_settings, context)
        yield result._replace(
            check_results=[
                c for c in result.check_results or []
                if (member.key, c.check_name) in selected_checks
            ]
        )


def _observe_providers(
    context: AssetExecutionContext,
    lead: IngestionAssetSpec,
    settings: Settings,
    attempts: Mapping[str, tuple[str, str]],
    calls: CallStats | None,
) -> None:
    """Record each of the step's providers' health on its external asset
    (``providers/<slug>``): how this step's attempt went, breaker, quota, calls."""
    for meta in lead.providers:
        slug = meta.slug.value
        attempt = attempts.get(slug)
        mine = [r for r in (calls.records if calls else []) if r.provider.split(":")[-1] == slug]
        try:
            health = provider_health(settings, meta.slug) if meta.default_base_url else None
        except Exception as exc:  # health is a report: never fail the step for it
            health = {"health_error": str(exc)[:200]}
        context.log_event(
            provider_observation(
                meta,
                dataset_table=lead.dataset.table,
                attempt={"outcome": attempt[0], "detail": attempt[1]} if attempt else None,
                health=health,
                calls=CallStats(records=mine).summary(),
            )
        )


def skip_tag_key(asset_key: AssetKey) -> str:
    """The run tag that names one skipped asset and its reason (one tag per asset, so the
    steps of a multi-process run add theirs without overwriting each other's)."""
    return f"{SKIPPED_TAG}.{asset_key.to_user_string().replace('/', '.')}"


def _short(reason: str, limit: int = 200) -> str:
    return reason if len(reason) <= limit else reason[: limit - 1] + "…"


def _record_skip(
    context: AssetExecutionContext, members: Sequence[IngestionAssetSpec], reason: str
) -> None:
    """Say where analysts look first that these assets were skipped, and why.

    No materialization is recorded (the step yields nothing: "skipped" is not "landed").
    Instead: an ``AssetObservation`` per asset (and partition) whose ``skipped`` metadata
    the asset's overview shows, and run tags the run list shows: ``dashtam/skipped.<asset>``
    with the reason, ``dashtam/skipped`` naming every skipped asset of the run, and
    ``dashtam/outcome`` = ``skipped`` when every selected asset was skipped (else
    ``partly_skipped``), so a run that did nothing is not a plain green success. The run
    itself still succeeds: a missing key, login or right is not a failure.
    """
    partitions = [p for p in _partition_keys(context) if p is not None] or [None]
    for member in members:
        name = member.key.to_user_string()
        context.log.warning(f"{name} skipped: {reason}")
        for partition in partitions:
            context.log_event(
                AssetObservation(
                    asset_key=member.key,
                    partition=partition,
                    description=f"skipped: {reason}",
                    metadata={
                        "skipped": MetadataValue.text(reason),
                        "dashtam/outcome": MetadataValue.text("skipped"),
                    },
                )
            )
    instance = context.instance
    instance.add_run_tags(
        context.run_id, {skip_tag_key(m.key): _short(reason) for m in members}
    )
    # read back after our own write: the last step to skip sees every other step's tags
    run = instance.get_run_by_id(context.run_id)
    tags = run.tags if run is not None else {}
    prefix = f"{SKIPPED_TAG}."
    skipped = sorted(k[len(prefix):].replace(".", "/", 1) for k in tags if k.startswith(prefix))
    selected = context.run.asset_selection or frozenset()
    everything = {k.to_user_string() for k in selected} <= set(skipped) if selected else False
    instance.add_run_tags(
        context.run_id,
        {
            SKIPPED_TAG: _short(", ".join(skipped)),
            OUTCOME_TAG: "skipped" if everything else "partly_skipped",
        },
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
