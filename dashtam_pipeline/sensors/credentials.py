"""Credential sensors: tokens renewed ahead of time, re-logins announced, and a catch-up
run once a provider's connection is back.

OAuth access tokens (Schwab: 30 minutes) lapse between nightly runs, and the refresh
token (7 days) ends in a re-login only a person can do. Left alone, both surface as a
broken nightly run. Two sensors and one job keep that from happening:

* ``credential_expiry_sensor`` (every few minutes) asks ``credential_refresh_job`` to
  renew each OAuth connection whose access token expires within ``REFRESH_AHEAD``, so
  every renewal is a run a person can see in the UI. A connection whose refresh token has
  already lapsed is marked EXPIRED on the spot (no call can help); one the provider
  refuses is marked EXPIRED by the job (``connections.refresh_oauth_connection``), whose
  run then fails with the command to run. Within ``RELOGIN_WARNING`` of the re-login the
  tick (and the refresh run's tags) name the provider, the exact deadline and the
  command. A connection that is not ACTIVE is reported on the tick: its assets are
  skipped, not failed, by the clients' token source until someone reconnects.
* ``connection_catch_up_sensor`` follows each connection's status from tick to tick (its
  cursor) and, when one goes from EXPIRED/REVOKED/FAILED back to ACTIVE, requests one
  catch-up run of the assets only that provider serves: unpartitioned assets again,
  time-partitioned ones from the partition after the last materialized one up to now,
  connection-partitioned ones for that connection alone, other partitioned ones where
  nothing landed since the connection went down. The run
  key (``catchup-<connection id>-<updated_at>``) keeps a catch-up from running twice.

Everything reads the registry (``get_oauth_providers``, the API-key providers) and the
asset graph: no provider is named here. Both sensors and the refresh job read the time
from the ``clock`` resource (``resources.ClockResource``), so tests move time.
"""

import datetime as dt
import json
import uuid
from dataclasses import dataclass, field

from dagster import (
    AddDynamicPartitionsRequest,
    AssetKey,
    AssetRecordsFilter,
    AssetSelection,
    Config,
    DagsterInstance,
    DagsterRunStatus,
    DefaultSensorStatus,
    Failure,
    JobDefinition,
    OpExecutionContext,
    PartitionsDefinition,
    RunRequest,
    RunsFilter,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    TimeWindowPartitionsDefinition,
    job,
    op,
    partition_loading_context,
    sensor,
)

from dashtam_pipeline import connections
from dashtam_pipeline.assets.factory import ingestion_asset_specs
from dashtam_pipeline.assets.partitions import connection_partitions, is_connection_partitions
from dashtam_pipeline.dagster_names import AssetGraph
from dashtam_pipeline.domain.provider_connection import ConnectionStatus, ProviderConnection
from dashtam_pipeline.errors import ErrorKind, ProviderError
from dashtam_pipeline.jobs import PARTITION_RANGE_END, PARTITION_RANGE_START
from dashtam_pipeline.registry import ProviderSlug, get_oauth_providers, get_provider_metadata
from dashtam_pipeline.resources import (
    ClockResource,
    StateStoreResource,
    StorageResource,
    settings_from,
)
from dashtam_pipeline.sensors.dlq_replay import LAUNCHED_BY_TAG, PROVIDER_TAG, asset_graph_of
from dashtam_pipeline.sensors.results import sensor_result
from dashtam_pipeline.settings import Settings
from dashtam_pipeline.state.connection_repository import ConnectionRepository, to_text

EXPIRY_SENSOR_NAME = "credential_expiry_sensor"
CATCH_UP_SENSOR_NAME = "connection_catch_up_sensor"
REFRESH_JOB_NAME = "credential_refresh_job"
REFRESH_OP_NAME = "refresh_credentials"
#: "Every few minutes": well inside an access token's 30 minutes.
MINIMUM_INTERVAL_SECONDS = 180
#: Renew an access token this long before it lapses: more than a tick and a run launch.
REFRESH_AHEAD = dt.timedelta(minutes=10)
#: Warn this long before the refresh token ends (the 7-day re-login).
RELOGIN_WARNING = dt.timedelta(hours=24)
#: Refresh runs tried for one token before the sensor stops asking (the client's token
#: source still refreshes on its next call).
MAX_REFRESH_ATTEMPTS = 3
#: Statuses a person must fix; a return from one to ACTIVE means work was missed.
DOWN_STATUSES = frozenset(
    {ConnectionStatus.EXPIRED, ConnectionStatus.REVOKED, ConnectionStatus.FAILED}
)

CONNECTION_TAG = "dashtam/connection_id"
REFRESH_KEY_TAG = "dashtam/refresh_key"  # one token generation of one connection
RELOGIN_WARNING_TAG = "dashtam/relogin_warning"
CATCH_UP_OF_TAG = "dashtam/catch_up_of"  # the connection whose return this run catches up
CATCH_UP_REASON_TAG = "dashtam/catch_up_reason"


# -- shared wording ----------------------------------------------------------------------
def relogin_warning(connection: ProviderConnection, now: dt.datetime) -> str | None:
    """The sentence a person sees when the re-login deadline is within ``RELOGIN_WARNING``."""
    creds = connection.credentials
    if creds is None or creds.refresh_expires_at is None:
        return None
    if not connection.is_refresh_expiring_within(now, RELOGIN_WARNING):
        return None
    meta = get_provider_metadata(connection.provider_slug)
    left = max(creds.refresh_expires_at - now, dt.timedelta(0))
    hours, minutes = divmod(int(left.total_seconds()) // 60, 60)
    return (
        f"{meta.display_name} login expires on {creds.refresh_expires_at:%Y-%m-%d %H:%M} UTC "
        f"(in {hours} h {minutes:02d} min): run `dashtam connect {meta.slug.value}` before "
        "then, or its assets are skipped from that moment"
    )


# -- the refresh job ---------------------------------------------------------------------
class RefreshConfig(Config):
    """The connections one refresh run renews (ids, as the sensor's run config names them)."""

    connection_ids: list[str]


def _refresh_one(
    context: OpExecutionContext, settings: Settings, raw_id: str, now: dt.datetime
) -> str | None:
    """Renew one connection's tokens; the reason a person must act, or None."""
    repo = ConnectionRepository.from_settings(settings)
    connection = repo.find_by_id(uuid.UUID(raw_id))
    if connection is None:
        context.log.warning(f"connection {raw_id} no longer exists: nothing to refresh")
        return None
    slug = connection.provider_slug
    live = connections.current_connection(repo, slug)
    if live is None or live.id != connection.id:
        context.log.warning(f"connection {raw_id} is no longer {slug}'s live connection")
        return None
    try:
        tokens = connections.refresh_oauth_connection(settings, slug, now=now)
    except ProviderError as error:
        if error.kind is ErrorKind.NOT_CONNECTED:
            return error.message  # EXPIRED now (or unusable): only a person can help
        raise Failure(
            description=f"{slug} token refresh failed: {error.message}",
            metadata={"connection_id": raw_id, "error_kind": error.kind.value},
            allow_retries=False,  # the sensor asks again on a later tick
        ) from None
    context.log.info(
        f"{slug}: access token renewed until {tokens.expires_at:%Y-%m-%d %H:%M:%S} UTC; "
        f"re-login due {tokens.refresh_expires_at:%Y-%m-%d %H:%M} UTC"
    )
    renewed = repo.find_by_id(connection.id)
    warning = relogin_warning(renewed, now) if renewed is not None else None
    if warning:
        context.log.warning(warning)
    return None


def build_refresh_job() -> JobDefinition:
    """``credential_refresh_job``: renews the OAuth tokens of the connections in its run
    config. A refresh the provider refuses leaves the connection EXPIRED and fails the run
    with the command to run, so the UI shows it red until someone reconnects."""

    @op(
        name=REFRESH_OP_NAME,
        description="Refresh the OAuth access tokens of the connections named in the config.",
    )
    def refresh_credentials(
        context: OpExecutionContext, config: RefreshConfig, clock: ClockResource,
        storage: StorageResource, state: StateStoreResource,
    ) -> None:
        settings = settings_from(storage, state)
        needs_person = [
            reason
            for raw_id in config.connection_ids
            if (reason := _refresh_one(context, settings, raw_id, clock.now())) is not None
        ]
        if needs_person:
            raise Failure(
                description="; ".join(needs_person),
                metadata={
                    "connection_ids": ", ".join(config.connection_ids),
                    "error_kind": ErrorKind.NOT_CONNECTED.value,
                },
                allow_retries=False,
            )

    @job(
        name=REFRESH_JOB_NAME,
        description=(
            "Renews OAuth access tokens ahead of expiry (requested by credential_expiry_sensor"
            "). Fails with the command to run when only a new login can help."
        ),
        tags={LAUNCHED_BY_TAG: EXPIRY_SENSOR_NAME},
    )
    def credential_refresh_job() -> None:
        refresh_credentials()

    return credential_refresh_job


# -- the expiry sensor -------------------------------------------------------------------
@dataclass
class Tick:
    """One evaluation's decisions: runs to request, and lines a person reads on the tick."""

    run_requests: list[RunRequest] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    cursor: str | None = None
    #: Connection partitions a requested run needs that are not registered yet.
    partitions: list[AddDynamicPartitionsRequest] = field(default_factory=list)

    def result(self, idle: str) -> SensorResult:
        return sensor_result(self.run_requests, self.notes, self.cursor, idle,
                             partitions=self.partitions)


def refresh_key(connection: ProviderConnection) -> str:
    """One token generation of one connection (a renewed token changes its expiry)."""
    expires_at = connection.credentials.expires_at if connection.credentials else None
    stamp = f"{expires_at:%Y%m%dT%H%M%SZ}" if expires_at else "none"
    return f"refresh-{connection.id}-{stamp}"


def plan_refreshes(instance: DagsterInstance, settings: Settings, now: dt.datetime) -> Tick:
    """Decide one tick of the expiry sensor (see the module docstring)."""
    tick = Tick()
    repo = ConnectionRepository.from_settings(settings)
    expiring = {
        c.id for c in repo.find_expiring_soon(int(REFRESH_AHEAD.total_seconds() // 60), now=now)
    }
    for slug in sorted(get_oauth_providers()):
        connection = connections.current_connection(repo, slug)
        if connection is None or not connection.is_connected():
            tick.notes.append(
                f"{connections.unusable_reason(connection, slug)} "
                f"({slug.value}'s assets are skipped until then)"
            )
            continue
        assert connection.credentials is not None  # is_connected
        if not connection.credentials.can_refresh(now):
            tick.notes.append(_expire(repo, connection, slug, now))
            continue
        warning = relogin_warning(connection, now)
        if warning:
            tick.notes.append(warning)
        if connection.id in expiring:
            request = _refresh_request(instance, connection, warning, tick)
            if request is not None:
                tick.run_requests.append(request)
    return tick


def _expire(
    repo: ConnectionRepository,
    connection: ProviderConnection,
    slug: ProviderSlug,
    now: dt.datetime,
) -> str:
    """The refresh token has lapsed: no call can renew it, so EXPIRED now."""
    if connection.mark_expired(now=now, reason="the refresh token expired"):
        repo.save(connection)
    return f"{connections.unusable_reason(connection, slug)} (marked EXPIRED)"


def _refresh_request(
    instance: DagsterInstance,
    connection: ProviderConnection,
    warning: str | None,
    tick: Tick,
) -> RunRequest | None:
    """A refresh run for this token, unless one is in flight, done, or tried enough."""
    key = refresh_key(connection)
    slug = connection.provider_slug
    prior = instance.get_runs(RunsFilter(tags={REFRESH_KEY_TAG: key}))
    if any(not run.is_finished for run in prior):
        tick.notes.append(f"{slug}: a token refresh is in flight")
        return None
    if any(run.status is DagsterRunStatus.SUCCESS for run in prior):
        tick.notes.append(f"{slug}: the token was refreshed by run {prior[0].run_id}")
        return None
    if len(prior) >= MAX_REFRESH_ATTEMPTS:
        tick.notes.append(
            f"{slug}: {len(prior)} refresh runs failed for this token; the client refreshes "
            "it on its next call"
        )
        return None
    assert connection.credentials is not None and connection.credentials.expires_at
    tick.notes.append(
        f"{slug}: access token expires at "
        f"{connection.credentials.expires_at:%Y-%m-%d %H:%M:%S} UTC: refreshing"
    )
    tags = {
        PROVIDER_TAG: slug,
        CONNECTION_TAG: str(connection.id),
        REFRESH_KEY_TAG: key,
        LAUNCHED_BY_TAG: EXPIRY_SENSOR_NAME,
    }
    if warning:
        tags[RELOGIN_WARNING_TAG] = warning
    return RunRequest(
        run_key=f"{key}#{len(prior) + 1}",
        run_config={"ops": {REFRESH_OP_NAME: {"config": {"connection_ids": [str(connection.id)]}}}},
        tags=tags,
    )


def build_expiry_sensor(
    *, minimum_interval_seconds: int = MINIMUM_INTERVAL_SECONDS
) -> SensorDefinition:
    """The expiry sensor over ``credential_refresh_job`` (wire the job beside it)."""

    @sensor(
        name=EXPIRY_SENSOR_NAME,
        job_name=REFRESH_JOB_NAME,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=DefaultSensorStatus.RUNNING,
        description=(
            "Renews OAuth tokens expiring within "
            f"{int(REFRESH_AHEAD.total_seconds() // 60)} minutes (credential_refresh_job), "
            "marks connections EXPIRED once their refresh token has lapsed, and warns "
            f"{int(RELOGIN_WARNING.total_seconds() // 3600)} h ahead of a re-login."
        ),
    )
    def credential_expiry_sensor(
        context: SensorEvaluationContext, clock: ClockResource, storage: StorageResource,
        state: StateStoreResource,
    ) -> SensorResult:
        tick = plan_refreshes(context.instance, settings_from(storage, state), clock.now())
        for note in tick.notes:
            context.log.info(note)
        return tick.result("every OAuth connection is ACTIVE and its token fresh")

    return credential_expiry_sensor


# -- the catch-up sensor -----------------------------------------------------------------
@dataclass(frozen=True)
class SeenStatus:
    """A connection's status at the last tick, and since when it has been down."""

    status: str
    down_since: str | None = None

    def as_json(self) -> dict[str, str]:
        raw = {"status": self.status}
        if self.down_since:
            raw["down_since"] = self.down_since
        return raw


def parse_status_cursor(cursor: str | None) -> dict[str, SeenStatus]:
    """Connection id → what the last tick saw (unreadable: empty, i.e. nothing to compare)."""
    if not cursor:
        return {}
    try:
        raw = json.loads(cursor)["connections"]
        return {k: SeenStatus(str(v["status"]), v.get("down_since")) for k, v in raw.items()}
    except (ValueError, KeyError, TypeError, AttributeError):
        return {}


def connected_providers() -> list[ProviderSlug]:
    """Providers with a connection to lose: OAuth and API-key ones (file imports have none)."""
    slugs = set(get_oauth_providers()) | {m.slug for m in connections.api_key_providers()}
    return sorted(slugs)


def provider_asset_keys(slug: str) -> list[AssetKey]:
    """The ingestion assets only ``slug`` serves: nothing else could fill them while its
    connection was down (a fallback chain's other providers could)."""
    return [
        spec.key
        for spec in ingestion_asset_specs()
        if [p.slug.value for p in spec.providers] == [slug]
    ]


def catch_up_selection() -> AssetSelection:
    return AssetSelection.assets(
        *sorted(
            {k for s in connected_providers() for k in provider_asset_keys(s.value)},
            key=lambda k: k.to_user_string(),
        )
    )


def missed_partitions(
    instance: DagsterInstance,
    key: AssetKey,
    partitions_def: PartitionsDefinition,
    down_since: dt.datetime,
    now: dt.datetime,
    connection: ProviderConnection | None = None,
) -> list[str]:
    """The partitions of ``key`` a catch-up must fill, in the definition's order.

    Time windows: every partition after the last one materialized (since the connection
    went down when none ever was) up to the last one that began before today: today's
    session is under way, the nightly run takes it. Connection partitions: the returning
    ``connection``'s own, when nothing landed in it since it went down (the others were
    never down). Other partitions (series, files): those with no materialization since
    the connection went down.
    """
    with partition_loading_context(effective_dt=now, dynamic_partitions_store=instance):
        keys = list(partitions_def.get_partition_keys())
        if is_connection_partitions(partitions_def):
            # its own partition, registered or not yet (``Tick.partitions`` adds it)
            keys = [str(connection.id)] if connection is not None else []
        if isinstance(partitions_def, TimeWindowPartitionsDefinition):
            keys = [k for k in keys if _began_before_today(partitions_def, k, now)]
            done = instance.get_materialized_partitions(key)
            last = max((i for i, k in enumerate(keys) if k in done), default=None)
            if last is not None:
                return keys[last + 1 :]
            return [
                k for k in keys if partitions_def.time_window_for_partition_key(k).end > down_since
            ]
    records = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=key, after_timestamp=down_since.timestamp()),
        limit=max(len(keys), 1) * 10,
    ).records
    landed = {r.partition_key for r in records}
    return [k for k in keys if k not in landed]


def _began_before_today(
    partitions_def: TimeWindowPartitionsDefinition, key: str, now: dt.datetime
) -> bool:
    start = partitions_def.time_window_for_partition_key(key).start
    return start.date() < now.astimezone(start.tzinfo).date()


@dataclass
class _Group:
    """Assets of one catch-up run: one partitions definition, the partitions to fill."""

    partitions_def: PartitionsDefinition | None
    keys: list[AssetKey] = field(default_factory=list)
    partitions: set[str] = field(default_factory=set)
    #: The most partitions per run (the assets' ``BackfillPolicy``; None: no limit).
    per_run: int | None = None


def catch_up_requests(
    instance: DagsterInstance,
    asset_graph: AssetGraph,
    connection: ProviderConnection,
    seen: SeenStatus,
    now: dt.datetime,
) -> list[RunRequest]:
    """The catch-up for a connection back to ACTIVE: one run per partitions definition of
    the provider's assets (one run for Schwab's unpartitioned snapshots)."""
    slug = connection.provider_slug
    down_since = dt.datetime.fromisoformat(seen.down_since) if seen.down_since else now
    groups: dict[PartitionsDefinition | None, _Group] = {}
    for key in provider_asset_keys(slug):
        if key not in asset_graph.materializable_asset_keys:
            continue
        partitions_def = asset_graph.get(key).partitions_def
        missed = (
            missed_partitions(instance, key, partitions_def, down_since, now, connection)
            if partitions_def is not None
            else []
        )
        if partitions_def is not None and not missed:
            continue
        policy = asset_graph.get(key).backfill_policy
        group = groups.setdefault(
            partitions_def,
            _Group(partitions_def, per_run=policy.max_partitions_per_run if policy else 1),
        )
        group.keys.append(key)
        group.partitions.update(missed)
    base_key = f"catchup-{connection.id}-{connection.updated_at:%Y%m%dT%H%M%S%fZ}"
    reason = (
        f"{slug} connection ACTIVE again after {seen.status} since "
        f"{seen.down_since or 'an unknown time'}"
    )
    ordered = sorted(
        groups.values(), key=lambda g: (g.partitions_def is not None, str(g.partitions_def))
    )
    runs = [
        (group, chunk) for group in ordered for chunk in _partition_chunks(instance, group, now)
    ]
    return [
        _catch_up_request(
            group,
            chunk,
            base_key if len(runs) == 1 else f"{base_key}-{index}",
            connection,
            reason,
        )
        for index, (group, chunk) in enumerate(runs, start=1)
    ]


def _partition_chunks(
    instance: DagsterInstance, group: _Group, now: dt.datetime
) -> list[list[str]]:
    """The group's missed partitions in definition order, cut into runs as its backfill
    policy allows (a month of missed days is one run, three months are three); ``[[]]``
    for unpartitioned assets (one run)."""
    if group.partitions_def is None:
        return [[]]
    if is_connection_partitions(group.partitions_def):
        return [sorted(group.partitions)]  # one connection's partition
    with partition_loading_context(effective_dt=now, dynamic_partitions_store=instance):
        ordered = [k for k in group.partitions_def.get_partition_keys() if k in group.partitions]
    size = group.per_run or len(ordered)
    return [ordered[i : i + size] for i in range(0, len(ordered), size)]


def _catch_up_request(
    group: _Group,
    partitions: list[str],
    run_key: str,
    connection: ProviderConnection,
    reason: str,
) -> RunRequest:
    tags = {
        PROVIDER_TAG: connection.provider_slug,
        CONNECTION_TAG: str(connection.id),
        CATCH_UP_OF_TAG: str(connection.id),
        CATCH_UP_REASON_TAG: reason,
        LAUNCHED_BY_TAG: CATCH_UP_SENSOR_NAME,
    }
    partition_key = None
    if len(partitions) == 1:
        partition_key = partitions[0]
    elif partitions:
        tags[PARTITION_RANGE_START], tags[PARTITION_RANGE_END] = partitions[0], partitions[-1]
    return RunRequest(
        run_key=run_key,
        asset_selection=sorted(group.keys, key=lambda k: k.to_user_string()),
        partition_key=partition_key,
        tags=tags,
    )


def plan_catch_ups(
    instance: DagsterInstance,
    asset_graph: AssetGraph,
    settings: Settings,
    cursor: str | None,
    now: dt.datetime,
) -> Tick:
    """Decide one tick of the catch-up sensor: compare each connection's status with the
    cursor's, request a catch-up on a return to ACTIVE, and keep the new statuses."""
    tick = Tick()
    seen = parse_status_cursor(cursor)
    last_tick = _cursor_time(cursor)
    wanted = {s.value for s in connected_providers()}
    current: dict[str, SeenStatus] = {}
    repository = ConnectionRepository.from_settings(settings)
    for connection in repository.find_all():
        if connection.provider_slug not in wanted:
            continue
        if connection.status is ConnectionStatus.DISCONNECTED:
            continue  # terminal: a new connection would have a new id
        before = seen.get(str(connection.id))
        current[str(connection.id)] = _seen_now(connection, before)
        if connection.status in DOWN_STATUSES:
            tick.notes.append(
                f"{connection.provider_slug} is {connection.status.value} since "
                f"{current[str(connection.id)].down_since}: a catch-up runs once it is "
                "ACTIVE again"
            )
        if (
            before is not None
            and last_tick is not None
            and connection.status is ConnectionStatus.ACTIVE
            and before.status == ConnectionStatus.ACTIVE.value
        ):
            # ACTIVE at both ticks, but maybe not in between: a sensor that did not tick
            # for a while (a stopped daemon) must still catch up what the outage missed
            downs = [
                change for change in repository.status_changes(connection.id, after=last_tick)
                if change.status in DOWN_STATUSES
            ]
            if downs:
                before = SeenStatus(downs[0].status.value, to_text(downs[0].changed_at))
        if (
            before is not None
            and connection.status is ConnectionStatus.ACTIVE
            and ConnectionStatus(before.status) in DOWN_STATUSES
        ):
            requests = catch_up_requests(instance, asset_graph, connection, before, now)
            tick.run_requests.extend(requests)
            tick.partitions.extend(_unregistered_partition(instance, connection, requests))
            tick.notes.append(
                f"{connection.provider_slug} is ACTIVE again after {before.status}: "
                f"{len(requests)} catch-up run(s)"
            )
    tick.cursor = json.dumps({
        "connections": {k: v.as_json() for k, v in sorted(current.items())},
        "seen_at": to_text(now),
    })
    return tick


def _unregistered_partition(
    instance: DagsterInstance, connection: ProviderConnection, requests: list[RunRequest]
) -> list[AddDynamicPartitionsRequest]:
    """The returning connection's own partition, when a catch-up run names it before the
    connection partitions sensor has registered it (Dagster adds it before the run)."""
    key = str(connection.id)
    name = connection_partitions(connection.provider_slug).name or ""
    if any(r.partition_key == key for r in requests) and key not in (
        instance.get_dynamic_partitions(name)
    ):
        return [AddDynamicPartitionsRequest(name, [key])]
    return []


def _cursor_time(cursor: str | None) -> dt.datetime | None:
    """When the tick that wrote ``cursor`` ran (None for an older cursor without it)."""
    try:
        return dt.datetime.fromisoformat(json.loads(cursor or "")["seen_at"])
    except (ValueError, KeyError, TypeError):
        return None


def _seen_now(connection: ProviderConnection, before: SeenStatus | None) -> SeenStatus:
    """The status to remember; a down connection keeps the moment it first went down."""
    if connection.status not in DOWN_STATUSES:
        return SeenStatus(connection.status.value)
    if (
        before is not None
        and before.down_since
        and ConnectionStatus(before.status) in (DOWN_STATUSES)
    ):
        return SeenStatus(connection.status.value, before.down_since)
    return SeenStatus(connection.status.value, to_text(connection.updated_at))


def build_catch_up_sensor(
    *, minimum_interval_seconds: int = MINIMUM_INTERVAL_SECONDS
) -> SensorDefinition:
    """The catch-up sensor over the assets of every provider that has a connection."""

    @sensor(
        name=CATCH_UP_SENSOR_NAME,
        asset_selection=catch_up_selection(),
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=DefaultSensorStatus.RUNNING,
        description=(
            "Launches one catch-up run of a provider's assets when its connection goes from "
            "EXPIRED, REVOKED or FAILED back to ACTIVE (the partitions missed while down)."
        ),
    )
    def connection_catch_up_sensor(
        context: SensorEvaluationContext, clock: ClockResource, storage: StorageResource,
        state: StateStoreResource,
    ) -> SensorResult:
        settings = settings_from(storage, state)
        tick = plan_catch_ups(
            context.instance,
            asset_graph_of(context, settings),
            settings,
            context.cursor,
            clock.now(),
        )
        for note in tick.notes:
            context.log.info(note)
        return tick.result("no connection came back")

    return connection_catch_up_sensor


# -- wiring ------------------------------------------------------------------------------
def build_credential_jobs() -> list[JobDefinition]:
    """For ``Definitions(jobs=[...])``: ``credential_refresh_job`` (needs the ``clock``
    resource)."""
    return [build_refresh_job()]


def build_credential_sensors(
    *, minimum_interval_seconds: int = MINIMUM_INTERVAL_SECONDS
) -> list[SensorDefinition]:
    """For ``Definitions(sensors=[...])``: the expiry sensor and the catch-up sensor (both
    need the ``clock`` resource)."""
    return [
        build_expiry_sensor(minimum_interval_seconds=minimum_interval_seconds),
        build_catch_up_sensor(minimum_interval_seconds=minimum_interval_seconds),
    ]
