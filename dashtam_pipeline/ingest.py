"""One ingestion, independent of Dagster: fetch (with fallback) → validate → land.

The Dagster assets built by ``assets/factory.py`` are thin wrappers around
``ingest_dataset``; keeping the flow here means it is testable without an instance and
reusable by replays. The flow is the same for every dataset and provider, driven by the
registry: rights are checked before any call, providers are tried in fallback order,
providers that cannot run (missing settings, no connection) are skipped with a reason,
bad rows go to ``ops.quarantine`` while good rows land, and nothing is half-written.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import logging
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx
import pandas as pd
from pandera.errors import SchemaError, SchemaErrors

from dashtam_pipeline.clients import build_client
from dashtam_pipeline.clients.base import (
    FetchRequest,
    FetchResult,
    RejectedRecord,
    UnsendableCredentials,
)
from dashtam_pipeline.connections import (
    describe,
    mark_auth_failure,
    operator_connection,
    record_successful_sync,
    require_usable_key,
    syncable_connections,
    utcnow,
)
from dashtam_pipeline.domain.provider_connection import ProviderConnection
from dashtam_pipeline.errors import SKIPPABLE_KINDS, ErrorKind, ProviderError
from dashtam_pipeline.http import CallRecord, CallStats
from dashtam_pipeline.registry import (
    Dataset,
    DatasetSpec,
    Domain,
    ProviderAuthType,
    ProviderMetadata,
    ProviderSlug,
    fetch_method_name,
)
from dashtam_pipeline.rights import check_rights
from dashtam_pipeline.schemas import SCHEMAS
from dashtam_pipeline.settings import Settings
from dashtam_pipeline.state.connection_repository import ConnectionRepository
from dashtam_pipeline.storage.batch import LakeBatch
from dashtam_pipeline.storage.lake import Lake, WriteResult
from dashtam_pipeline.validation import (
    QuarantineRecord,
    ValidationResult,
    record_json,
    schema_errors_sentence,
    validate,
)

log = logging.getLogger(__name__)

ClientFactory = Callable[[ProviderSlug, Settings], Any]


@dataclass
class ProviderAttempt:
    """What happened when one provider of the fallback chain was asked."""

    provider: str
    outcome: str  # "served", "skipped" or an ErrorKind value
    detail: str = ""


@dataclass
class IngestionOutcome:
    """Everything an asset reports about one ingestion."""

    dataset: DatasetSpec
    skipped_reason: str | None = None
    served_by: str | None = None
    attempts: list[ProviderAttempt] = field(default_factory=list)
    validation: ValidationResult | None = None
    write: WriteResult | None = None
    quarantined: int = 0
    notes: list[str] = field(default_factory=list)
    calls: CallStats = field(default_factory=CallStats)
    #: Set when every provider failed and last good values were served instead.
    stale_reason: str | None = None
    failure: ProviderError | None = None
    #: What landed in each companion dataset from the same fetch (``DatasetSpec.companions``).
    companions: dict[Dataset, IngestionOutcome] = field(default_factory=dict)

    @property
    def skipped(self) -> bool:
        return self.skipped_reason is not None

    @property
    def stale(self) -> bool:
        return self.stale_reason is not None

    @property
    def rows_landed(self) -> int:
        return self.write.rows_written if self.write else 0


class AllProvidersFailed(ProviderError):
    """Every provider of a dataset's chain failed; carries the last error's kind."""


def ingest_dataset(
    spec: DatasetSpec,
    providers: Sequence[ProviderMetadata],
    request: FetchRequest,
    settings: Settings,
    lake: Lake,
    *,
    client_factory: ClientFactory | None = None,
    companions: Sequence[DatasetSpec] = (),
    record_sync: bool = True,
) -> IngestionOutcome:
    """Fetch ``spec`` from the first provider that serves it, validate, and land it.

    ``companions`` (some of ``spec.companions``) are landed too, from the rows the same
    fetch returned for them; their outcomes are in ``outcome.companions``.
    The connection's ``last_sync_at`` is recorded once its rows are landed; a caller whose
    ``lake`` only collects rows (``ingest_connections``' batch) passes
    ``record_sync=False`` and records it after the batch is written.
    Raises ``ProviderError`` when every provider that could run failed (the run fails and
    says why); returns a skipped outcome when none could run at all.
    """
    if _per_connection(spec, providers, request):
        connections = syncable_connections(settings, providers[0].slug)
        if request.connection_ids:  # a run of connection partitions: those, and only those
            chosen, gone = partition_connections(connections, request.connection_ids)
            outcome = ingest_connections(spec, providers[0], chosen, request, settings, lake,
                                         client_factory=client_factory)
            outcome.notes.extend(
                f"connection {key}: disconnected or forgotten since its partition was "
                "added; nothing to sync (its partition leaves with the next sensor tick)"
                for key in gone
            )
            return outcome
        if connections:
            return ingest_connections(spec, providers[0], connections, request, settings,
                                      lake, client_factory=client_factory)
    outcome = IngestionOutcome(dataset=spec)
    make_client = client_factory or (lambda slug, s, **kw: build_client(slug, s, **kw))
    result: FetchResult | None = None
    last_error: ProviderError | None = None
    for meta in providers:
        label = meta.slug.value
        try:
            check_rights(settings.dashtam_rights_profile, spec.dataset, label)
            missing = [] if settings.dashtam_sandbox else settings.missing_settings(meta.slug)
            if missing:
                raise ProviderError(
                    label,
                    ErrorKind.NOT_CONFIGURED,
                    f"{meta.display_name} is not configured: set {', '.join(missing)}",
                )
            explicit = request.connection_id  # a connection partition's own run
            require_usable_key(settings, meta.slug, connection_id=explicit)
            request = owned_request(spec, meta, request, settings)
            with _unbuildable_requests(meta), _schema_errors_as_sentence(meta, spec):
                client = (make_client(meta.slug, settings, connection_id=explicit)
                          if explicit and _takes_connection(make_client)
                          else make_client(meta.slug, settings))
                try:
                    result = stamp_owner(
                        getattr(client, fetch_method_name(spec.dataset))(request), request
                    )
                except BaseException:
                    _close(client, outcome)
                    raise
            outcome.served_by = client.provider_label
            outcome.attempts.append(ProviderAttempt(label, "served"))
            break
        except ProviderError as error:
            if error.kind is ErrorKind.RIGHTS_DENIED:
                record_denial(settings, label, spec)
            if error.kind is ErrorKind.AUTH and (error.status_code in (401, 403)
                                                 or isinstance(error, UnsendableCredentials)):
                # the keys were refused: the connection says so, and later runs skip
                # this provider with the reason until the keys change
                mark_auth_failure(settings, meta.slug, error.message,
                                  connection_id=request.connection_id)
            kind = "skipped" if error.kind in SKIPPABLE_KINDS else error.kind.value
            outcome.attempts.append(ProviderAttempt(label, kind, str(error)))
            log.warning("%s: %s", spec.table, error)
            if error.kind not in SKIPPABLE_KINDS:
                last_error = error
    if result is None:
        if last_error is not None:
            tried = "; ".join(f"{a.provider}: {a.outcome}" for a in outcome.attempts)
            failure = AllProvidersFailed(
                last_error.provider,
                last_error.kind,
                f"no provider could serve {spec.table} ({tried}); last error: "
                f"{last_error.message}",
                status_code=last_error.status_code,
                endpoint=last_error.endpoint,
                retryable=last_error.retryable,
            )
            stale = last_good_rows(spec, request, lake) if spec.serves_stale else None
            if stale is None or (stale.frame.empty and not stale.kept):
                raise failure
            serve_last_good(spec, stale, failure, outcome, lake,
                            partition_key=request.partition_key)
            return outcome
        outcome.skipped_reason = "; ".join(a.detail for a in outcome.attempts) or (
            f"no provider serves {spec.table}"
        )
        return outcome

    try:
        outcome.notes.extend(result.notes)
        land(spec, result, outcome, lake, partition_key=request.partition_key,
             user_id=request.user_id)
        for companion in companions:
            outcome.companions[companion.dataset] = land_companion(
                spec, companion, result, outcome, lake, partition_key=request.partition_key,
                user_id=request.user_id,
            )
        # Only once rows and quarantine records are safely written may a client act on
        # its source (a file import moves rejected files aside).
        finish = getattr(client, "after_landed", None)
        if finish is not None:
            outcome.notes.extend(finish())
    finally:
        _close(client, outcome)
    if record_sync:
        record_successful_sync(settings, meta.slug, connection_id=request.connection_id)
    return outcome


@contextlib.contextmanager
def _schema_errors_as_sentence(meta: ProviderMetadata, spec: DatasetSpec) -> Iterator[None]:
    """A pandera error raised while a client builds its frames (a parser's coercion that
    no row-level guard caught) becomes a ``ProviderError`` whose message is one sentence
    (provider, dataset, column, check, count), never pandera's JSON report."""
    try:
        yield
    except SchemaErrors as exc:
        raise ProviderError(
            meta.slug.value, ErrorKind.MALFORMED,
            schema_errors_sentence(exc, provider=meta.slug.value, table=spec.table),
        ) from None
    except SchemaError as exc:
        column = getattr(exc, "column_name", None) or "?"
        raise ProviderError(
            meta.slug.value, ErrorKind.MALFORMED,
            f"{meta.slug.value} {spec.table}: rows do not match the schema: column "
            f"{column}: {str(exc).splitlines()[0][:200]}",
        ) from None


@contextlib.contextmanager
def _unbuildable_requests(meta: ProviderMetadata) -> Iterator[None]:
    """Turn the errors of a request that cannot even be built (a setting or stored key
    httpx cannot encode) into a ``ProviderError`` naming the provider: that provider (or
    that connection) fails with a sentence, never a traceback, and never takes the other
    connections of the run down with it. Clients refuse unsendable credential headers
    themselves (``clients.base.check_sendable_headers``); this is the net under it.
    The exception's text is left out: it may quote the value, a secret."""
    try:
        yield
    except (UnicodeEncodeError, httpx.InvalidURL) as exc:
        raise ProviderError(
            meta.slug.value, ErrorKind.BAD_REQUEST,
            f"a request to {meta.display_name} could not be built ({type(exc).__name__}): "
            "a setting or stored credential holds characters HTTP cannot carry",
            retryable=False,
        ) from None


#: How far before a connection's last sync its next transactions sync starts: activity
#: the provider posts late (settlements, corrections) is taken again, and the keys make
#: re-taking it free of duplicates.
SYNC_OVERLAP = dt.timedelta(days=3)


def _takes_connection(factory: ClientFactory) -> bool:
    """Whether a client factory can build a client for one connection (a test's simple
    ``(slug, settings)`` factory cannot: it gets the operator's client, as before)."""
    import inspect

    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.kind is p.VAR_KEYWORD or p.name == "connection_id" for p in params)


def _per_connection(
    spec: DatasetSpec, providers: Sequence[ProviderMetadata], request: FetchRequest
) -> bool:
    """A brokerage API asset run that names no connection syncs each of the provider's
    connections in turn (each with its own credentials)."""
    return (spec.domain is Domain.BROKERAGE and len(providers) == 1
            and providers[0].auth_type is not ProviderAuthType.FILE_IMPORT
            and request.connection_id is None)


def partition_connections(
    connections: Sequence[ProviderConnection], keys: Sequence[str]
) -> tuple[list[ProviderConnection], list[str]]:
    """The syncable connections a run's connection partitions name, in the run's order,
    and the keys that name none (a connection disconnected or forgotten since)."""
    by_id = {str(c.id): c for c in connections}
    return [by_id[k] for k in keys if k in by_id], [k for k in keys if k not in by_id]


class ConnectionsFailed(ProviderError):
    """Some connections of a brokerage run failed after retries (every other one landed):
    the first failure, and the ids of every connection that failed, so only their
    partitions get dead letters and a replay re-runs only them."""

    def __init__(self, first: ProviderError, connection_ids: Sequence[str]) -> None:
        more = len(connection_ids) - 1
        super().__init__(
            first.provider, first.kind,
            first.message + (f" (and {more} other connection(s) failed)" if more else ""),
            status_code=first.status_code, endpoint=first.endpoint,
            retry_after=first.retry_after, retryable=first.retryable,
        )
        self.connection_ids = tuple(connection_ids)

    def __reduce__(self) -> tuple[object, ...]:
        first = ProviderError(self.provider, self.kind, self.message,
                              status_code=self.status_code, endpoint=self.endpoint,
                              retry_after=self.retry_after, retryable=self.retryable)
        return (_unpickle_connections_failed, (first, self.connection_ids))


def _unpickle_connections_failed(
    first: ProviderError, connection_ids: Sequence[str]
) -> ConnectionsFailed:
    error = ConnectionsFailed(first, ())
    error.message, error.connection_ids = first.message, tuple(connection_ids)
    return error


def connection_request(
    spec: DatasetSpec, connection: ProviderConnection, request: FetchRequest,
    settings: Settings,
) -> FetchRequest:
    """The request of one connection: its owner, and for transactions the window its
    history calls for: everything (``start=None``) on its first sync, else from its last
    sync minus ``SYNC_OVERLAP``."""
    owned = dataclasses.replace(
        request, user_id=str(connection.user_id), connection_id=str(connection.id),
        # a connection partition's rows and quarantined records are that partition's
        partition_key=str(connection.id) if request.connection_ids else request.partition_key,
    )
    if spec.dataset is not Dataset.TRANSACTIONS:
        return owned
    repo = ConnectionRepository.from_settings(settings)
    last = repo.last_synced(connection.id, spec.dataset.value)
    start = None if last is None else (last - SYNC_OVERLAP).date()
    return dataclasses.replace(owned, start=start)


#: Connections of one run synced at once. Each mostly waits on its provider (every
#: request a round trip, a Schwab window or an Alpaca page after another), and the
#: provider's rate limits, shared across threads and processes, pace them all anyway.
CONNECTIONS_AT_ONCE = 8


def ingest_connections(
    spec: DatasetSpec,
    meta: ProviderMetadata,
    connections: Sequence[ProviderConnection],
    request: FetchRequest,
    settings: Settings,
    lake: Lake,
    *,
    client_factory: ClientFactory | None = None,
) -> IngestionOutcome:
    """Sync ``spec`` for each connection on its own, ``CONNECTIONS_AT_ONCE`` at a time,
    and land every connection's rows with one upsert per table (``LakeBatch``).

    One connection that cannot sync (an EXPIRED login) is skipped with its user, alias and
    reconnect command while the others land; a real failure of one is raised
    (``ConnectionsFailed``, naming every failed connection) once every other connection
    has landed. A connection is marked synced only once its rows are written."""
    total = IngestionOutcome(dataset=spec, served_by=None)
    skipped: list[str] = []
    failure: ProviderError | None = None
    failed: list[str] = []
    landed: list[ProviderConnection] = []
    batch = LakeBatch(lake)

    def sync(connection: ProviderConnection) -> IngestionOutcome:
        own = connection_request(spec, connection, request, settings)
        try:
            return ingest_dataset(spec, [meta], own, settings,
                                  batch,  # type: ignore[arg-type]
                                  client_factory=client_factory, record_sync=False)
        except ProviderError as error:
            raise _of_connection(error, connection) from None

    workers = max(1, min(CONNECTIONS_AT_ONCE, len(connections)))
    with ThreadPoolExecutor(max_workers=workers,
                            thread_name_prefix=f"sync-{meta.slug.value}") as pool:
        futures = [(connection, pool.submit(sync, connection)) for connection in connections]
        for connection, future in futures:  # in the run's order, whatever finished first
            try:
                one = future.result()
            except ProviderError as error:
                failure = failure or error
                failed.append(str(connection.id))
                total.notes.append(str(error))
                log.warning("%s: %s", spec.table, error)
                continue
            if one.skipped:
                skipped.append(one.skipped_reason or "")
                total.notes.append(f"skipped {describe(connection)}: {one.skipped_reason}")
                total.attempts.extend(one.attempts)
                continue
            landed.append(connection)
            _merge(total, one)
    writes = batch.flush()
    _written(total, writes)
    repo = ConnectionRepository.from_settings(settings)
    synced_at = utcnow()
    for connection in landed:  # only now are their rows written
        repo.mark_synced(connection.id, spec.dataset.value, synced_at)
        record_successful_sync(settings, meta.slug, synced_at, connection_id=connection.id)
    if failure is not None:
        raise ConnectionsFailed(failure, failed)
    if total.served_by is None:
        total.skipped_reason = "; ".join(skipped) or f"no {meta.slug.value} connection"
    return total


def _of_connection(error: ProviderError, connection: ProviderConnection) -> ProviderError:
    """``error`` with the connection it happened to named first (its provider, alias, user
    and id; never its keys), so a run with many connections says which one failed."""
    named = f"{describe(connection)} (id {connection.id})"
    if error.message.startswith(named):
        return error
    return type(error)(
        error.provider, error.kind, f"{named}: {error.message}",
        status_code=error.status_code, endpoint=error.endpoint,
        retry_after=error.retry_after, retryable=error.retryable,
    )


def _written(total: IngestionOutcome, writes: dict[str, WriteResult]) -> None:
    """Put what the batch's flush wrote (inserted and replaced rows, files) on the
    outcome and its companions, in place of the per-connection counts handed over."""
    if total.served_by is not None and total.dataset.table in writes:
        total.write = writes[total.dataset.table]
    for companion in total.companions.values():
        _written(companion, writes)


def _merge(total: IngestionOutcome, one: IngestionOutcome) -> None:
    """Add one connection's outcome to the asset's."""
    total.served_by = total.served_by or one.served_by
    total.attempts.extend(one.attempts)
    total.notes.extend(one.notes)
    total.calls.records.extend(one.calls.records)
    total.quarantined += one.quarantined
    total.validation = total.validation or one.validation
    if one.write is not None:
        if total.write is None:
            total.write = one.write
        else:
            a, b = total.write, one.write
            total.write = dataclasses.replace(
                a, rows_written=a.rows_written + b.rows_written,
                rows_inserted=a.rows_inserted + b.rows_inserted,
                rows_replaced=a.rows_replaced + b.rows_replaced,
                duplicates_dropped=a.duplicates_dropped + b.duplicates_dropped,
                files=[*a.files, *b.files])
    for dataset, companion in one.companions.items():
        if dataset in total.companions:
            _merge(total.companions[dataset], companion)
        else:
            total.companions[dataset] = companion


#: The columns that say whose a brokerage row is (``brokerage.*`` and the contract).
OWNER_COLUMNS = ("user_id", "connection_id")


def owned_request(
    spec: DatasetSpec, meta: ProviderMetadata, request: FetchRequest, settings: Settings
) -> FetchRequest:
    """The request with its owning connection filled in. A brokerage API asset run for a
    connection partition already names it; a run without one (an unpartitioned job, a
    test) syncs the operator's own connection of the provider. File imports name their
    owner per file (the inbox folder a file is in), so they are left alone."""
    if (spec.domain is not Domain.BROKERAGE or request.connection_id is not None
            or meta.auth_type is ProviderAuthType.FILE_IMPORT):
        return request
    connection = operator_connection(settings, meta.slug)
    if connection is None:
        return request
    return dataclasses.replace(
        request, user_id=str(connection.user_id), connection_id=str(connection.id)
    )


def stamp_owner(result: FetchResult, request: FetchRequest) -> FetchResult:
    """Put the request's ``user_id``/``connection_id`` on every row (companions too) that
    does not carry its own: a client knows the provider, the request knows whose it is."""
    if request.connection_id is None:
        return result
    owner = {"user_id": request.user_id, "connection_id": request.connection_id}

    def stamped(frame: pd.DataFrame) -> pd.DataFrame:
        frame = frame.copy()
        for name, value in owner.items():
            if name not in frame.columns:
                frame[name] = value
            else:  # a client's frame has the columns, empty: its own values win
                frame[name] = frame[name].astype(object).where(frame[name].notna(), value)
        return frame

    result.frame = stamped(result.frame)
    for rows in result.companions.values():
        rows.frame = stamped(rows.frame)
    for rejected in result.rejected:
        rejected.user_id = rejected.user_id or request.user_id
    return result


def _quarantine_owner(record: QuarantineRecord, user_id: str | None) -> QuarantineRecord:
    """A quarantined row keeps the user it belonged to: its own ``user_id`` column when it
    had one (rows are stamped before validation), else the request's owner."""
    if record.user_id is not None:
        return record
    try:
        own = json.loads(record.record).get("user_id")
    except (ValueError, AttributeError):
        own = None
    owner = own if isinstance(own, str) and own else user_id
    return dataclasses.replace(record, user_id=owner) if owner else record


def _close(client: Any, outcome: IngestionOutcome) -> None:
    stats = getattr(getattr(client, "http", None), "stats", None)
    if stats is not None:
        outcome.calls.records.extend(stats.records)
    if hasattr(client, "close"):
        client.close()




def record_denial(settings: Settings, provider: str, spec: DatasetSpec) -> None:
    """Put a rights refusal in the call audit: no request was sent, but the attempt to
    pull licensed data is what a license review asks about."""
    from dashtam_pipeline.resilience.audit import CallAudit
    from dashtam_pipeline.state.store import state_store

    CallAudit(state_store(settings), rights_profile=settings.dashtam_rights_profile).after_attempt(
        CallRecord(
            provider=provider, method="-", endpoint=f"dataset:{spec.table}", attempt=0,
            status_code=None, latency_ms=0.0, outcome=ErrorKind.RIGHTS_DENIED.value,
            error=f"{settings.dashtam_rights_profile!r} rights profile excludes {spec.table}",
        )
    )


def land(
    spec: DatasetSpec,
    result: FetchResult,
    outcome: IngestionOutcome,
    lake: Lake,
    *,
    partition_key: str | None,
    user_id: str | None = None,
) -> None:
    """Validate a fetch result, upsert the good rows and quarantine the rest (each
    quarantined record with its user, when it has one)."""
    provider = outcome.served_by or "unknown"
    model = SCHEMAS[spec.dataset]
    validation = validate(
        model, result.frame, provider=provider, table=spec.table, partition_key=partition_key
    )
    outcome.validation = validation
    rejected = [
        rejected_to_quarantine(r, provider=provider, table=spec.table, partition_key=partition_key)
        for r in result.rejected
    ]
    quarantine = [_quarantine_owner(r, user_id) for r in (*validation.quarantined, *rejected)]
    if quarantine:
        lake.quarantine(quarantine)
    outcome.quarantined = len(quarantine)
    outcome.write = lake.upsert(spec, validation.valid, model)


def land_companion(
    spec: DatasetSpec,
    companion: DatasetSpec,
    result: FetchResult,
    outcome: IngestionOutcome,
    lake: Lake,
    *,
    partition_key: str | None,
    user_id: str | None = None,
) -> IngestionOutcome:
    """Land the rows ``spec``'s fetch returned for ``companion`` (validated like any fetch)."""
    rows = result.companions.get(companion.dataset)
    if companion.dataset not in spec.companions or rows is None:
        raise RuntimeError(
            f"{outcome.served_by} returned no {companion.table} rows with {spec.table}: "
            f"the registry lists {companion.table} as a companion of {spec.table}, so "
            f"the client's {fetch_method_name(spec.dataset)} must return them"
        )
    landed = IngestionOutcome(
        dataset=companion, served_by=outcome.served_by, attempts=outcome.attempts,
        notes=list(rows.notes),
    )
    land(companion, rows, landed, lake, partition_key=partition_key, user_id=user_id)
    return landed


@dataclass
class LastGood(FetchResult):
    """``last_good_rows``' answer: the stale rows to serve (``frame``), and the symbols
    whose good rows of the date are already in the lake and are kept as they are."""

    kept: list[str] = field(default_factory=list)


def serve_last_good(
    spec: DatasetSpec,
    last: LastGood,
    failure: ProviderError,
    outcome: IngestionOutcome,
    lake: Lake,
    *,
    partition_key: str | None,
) -> None:
    """Every provider failed: land the stale rows ``last`` holds and keep the good rows
    the date already has, saying so. The run succeeds; the asset's ``not_stale`` check
    warns with ``stale_reason`` (the providers failed, what was served or kept).

    A date whose every symbol already has its good row rewrites nothing and marks
    nothing stale: re-running a good day during an outage must not turn real prices
    into stale ones, nor fail the run for want of anything to serve. Only stale rows
    get a dead letter (``outcome.failure``): a kept day needs no replay."""
    said = []
    if not last.frame.empty:
        outcome.failure = failure
        said.append(f"served the last good values of {len(last.frame)} symbol(s) marked "
                    "is_stale")
    if last.kept:
        said.append(f"kept the {len(last.kept)} good row(s) the date already had "
                    f"({', '.join(sorted(last.kept))})")
    outcome.served_by = "stale" if outcome.failure is not None else "kept"
    outcome.stale_reason = f"{failure}; {' and '.join(said)}"
    outcome.notes.append(f"{spec.table}: every provider failed; {' and '.join(said)}")
    log.warning("%s", outcome.stale_reason)
    if outcome.failure is not None:
        land(spec, last, outcome, lake, partition_key=partition_key)


def last_good_rows(spec: DatasetSpec, request: FetchRequest, lake: Lake) -> LastGood:
    """The last good (non-stale) row of each requested symbol from before the requested
    date, re-dated to it with ``is_stale = true``: what analysts get instead of a hole
    when every provider is down. Symbols that already have a good row for the date are
    left alone (``kept``), so a stale row never overwrites a real one."""
    as_of = request.as_of or request.end
    frame = lake.read_frame(spec.table)
    date_column = spec.key[1]
    if frame.empty or as_of is None:
        return LastGood(frame.iloc[0:0])
    good = frame[~frame["is_stale"].astype(bool) & frame["symbol"].isin(request.symbols)]
    good = good[good[date_column] <= as_of]
    have_today = set(good.loc[good[date_column] == as_of, "symbol"])
    latest = (
        good[~good["symbol"].isin(have_today)]
        .sort_values(date_column)
        .groupby("symbol", as_index=False)
        .tail(1)
        .assign(is_stale=True)
    )
    latest[date_column] = as_of
    return LastGood(latest.reset_index(drop=True), kept=sorted(have_today))


def rejected_to_quarantine(
    rejected: RejectedRecord, *, provider: str, table: str, partition_key: str | None
) -> QuarantineRecord:
    record = rejected.record
    if not isinstance(record, str):
        record = record_json(record)
    return QuarantineRecord(
        provider=provider,
        dataset=table,
        partition_key=rejected.partition_key or partition_key,
        reason=rejected.reason,
        record=record,
        quarantined_at=pd.Timestamp.now(tz="UTC"),
        user_id=rejected.user_id,
    )
