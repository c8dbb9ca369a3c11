"""The ``dashtam`` command line (see CONTRACT.md for the commands users rely on).

Every command prints human output to the terminal, ``--json`` output as one JSON document
on stdout, and errors as one actionable sentence on stderr with a non-zero exit — never
a bare traceback.

Exit codes, the same for every command:

* ``0``: done (for ``materialize``/``demo``/``dlq replay``: every asset landed or was
  skipped with its reason, and every blocking check passed);
* ``1``: the command ran and something failed: a step, a provider, the state store, a
  stored credential; stderr names the asset or provider and the root cause in one line;
* ``2``: nothing ran because the command line or a setting is wrong (argparse's usage
  errors, and every ``ConfigurationError``: "FMP_TIMEOUT_SECONDS must be a number of
  seconds greater than 0, got -1");
* ``130``: interrupted.

While Dagster executes runs, its console output (DEBUG lines, the stack traces of failed
steps, which Dagster prints from every step process) goes to ``$DASHTAM_DATA_DIR/logs/
dagster.log`` instead of the terminal: the same events, traces included, are in each run's
event log in the UI, and the terminal gets the progress bar and one line per failure.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import os
import sys
import traceback
import uuid
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from pydantic import ValidationError

from dashtam_pipeline.errors import ConfigurationError, PipelineError
from dashtam_pipeline.failures import exception_sentence, one_line

if TYPE_CHECKING:
    from dagster import Definitions

    from dashtam_pipeline.runner import RunPlan

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


def _print_table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    cells = [[("" if v is None else str(v)) for v in row] for row in rows]
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
    line = "  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))
    print(line)
    print("  ".join("-" * w for w in widths))
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)))


# --- providers --------------------------------------------------------------------------
def cmd_providers(args: argparse.Namespace) -> int:
    from dashtam_pipeline.registry import PROVIDER_REGISTRY
    from dashtam_pipeline.resilience.breaker import breaker_states
    from dashtam_pipeline.settings import load_settings
    from dashtam_pipeline.state.store import state_store

    settings = load_settings()
    breakers = breaker_states(state_store(settings))
    entries = []
    for meta in PROVIDER_REGISTRY:
        missing = settings.missing_settings(meta.slug)
        breaker = breakers.get(meta.slug.value)
        entries.append(
            {
                "slug": meta.slug.value,
                "display_name": meta.display_name,
                "category": meta.category.value,
                "auth_type": meta.auth_type.value,
                "capabilities": [c.value for c in meta.capabilities],
                "datasets": [d.value for d in meta.datasets],
                "required_settings": list(meta.required_env_vars),
                "settings_present": not missing,
                "missing_settings": missing,
                "circuit_state": (
                    None if meta.default_base_url is None  # file imports make no calls
                    else breaker.state if breaker else "closed"
                ),
            }
        )
    if args.json:
        print(json.dumps(entries, indent=2))
        return EXIT_OK
    _print_table(
        ["slug", "name", "category", "auth", "capabilities", "circuit", "settings"],
        [
            [
                e["slug"],
                e["display_name"],
                e["category"],
                e["auth_type"],
                ",".join(e["capabilities"]),
                e["circuit_state"] or "-",
                "present"
                if e["settings_present"]
                else "missing: " + ",".join(e["missing_settings"]),
            ]
            for e in entries
        ],
    )
    if settings.dashtam_sandbox:
        print("\nDASHTAM_SANDBOX=true: every provider is answered by the built-in sandbox.")
    return EXIT_OK


# --- materialize / demo -----------------------------------------------------------------
def _log_dir() -> Path:
    """``$DASHTAM_DATA_DIR/logs``, read from the environment and ``.env`` without the
    settings' checks (it must work even when the settings are what failed), resolved as
    ``Settings.data_dir`` resolves it (``data_dir_path``: blank is the default)."""
    from dashtam_pipeline.provider_settings import read_environment
    from dashtam_pipeline.settings import data_dir_path

    try:
        raw = read_environment().get("dashtam_data_dir")
    except ConfigurationError:  # an unreadable .env: the environment alone
        raw = os.environ.get("DASHTAM_DATA_DIR")
    try:
        return data_dir_path(raw) / "logs"
    except RuntimeError:  # a ``~user`` that names no user: refused by the settings
        return data_dir_path(None) / "logs"


@contextmanager
def dagster_console_to_log(what: str) -> Iterator[TextIO]:
    """Send Dagster's console output to ``logs/dagster.log`` while runs execute; yield the
    stream the command's own progress and failure lines go to (the terminal).

    Dagster's step processes log to the inherited stderr *file descriptor* (the multiprocess
    executor's "STEP_WORKER_STARTED" at DEBUG, whatever the run's logger config says, and
    every failed step's stack trace at ERROR), so swapping ``sys.stderr`` is not enough:
    descriptor 2 itself points at the log file until the runs are over. Under a test's
    ``capsys`` (no real descriptor behind ``sys.stderr``) the command's lines keep going
    to ``sys.stderr``.
    """
    terminal: TextIO = sys.stderr
    log_path = _log_dir() / "dagster.log"
    try:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(log_path, "a", encoding="utf-8", buffering=1)  # noqa: SIM115
    except OSError:
        yield terminal  # no writable data dir: Dagster's output stays on the terminal
        return
    log.write(f"\n=== {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M:%S} UTC  dashtam {what} "
              f"(pid {os.getpid()})\n")
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        stderr_fd = sys.stderr.fileno()
    except (AttributeError, OSError, io.UnsupportedOperation):
        stderr_fd = None
    saved = os.dup(2)
    own: TextIO | None = None
    if stderr_fd == 2:
        own = os.fdopen(os.dup(saved), "w", buffering=1, encoding="utf-8", errors="replace")
        terminal = own
    original = sys.stderr
    os.dup2(log.fileno(), 2)
    sys.stderr = log
    try:
        yield terminal
    finally:
        sys.stderr = original
        log.flush()
        os.dup2(saved, 2)
        os.close(saved)
        if own is not None:
            own.close()
        log.close()


def _materialize(
    selection: str | None,
    partition: str | None,
    start: str | None,
    end: str | None,
) -> int:
    from dashtam_pipeline.runner import plan_runs, resolve_selection

    _check_selection(selection)
    return _execute_and_report(lambda defs: plan_runs(
        defs, resolve_selection(defs, selection), partition=partition, start=start, end=end))


def _check_selection(selection: str | None) -> None:
    """Refuse an empty or blank ``--select``: Dagster reads it as "no filter", so
    ``--select "$UNSET_VAR"`` would materialize every asset, the opposite of a selection."""
    if selection is not None and not selection.strip():
        raise ConfigurationError("--select must name the assets to materialize (e.g. "
                                 "'group:market' or 'key:market/quotes'), got an empty "
                                 "selection; leave --select out to materialize everything")


def _execute_and_report(plan: Callable[[Definitions], list[RunPlan]]) -> int:
    """Plan the runs (``plan(definitions)``), launch them in waves with a progress bar on
    the terminal, and print what happened to each asset; the exit status."""
    from dashtam_pipeline.instance import get_instance
    from dashtam_pipeline.runner import execute_plans
    from dashtam_pipeline.settings import load_settings

    settings = load_settings()
    instance = get_instance(settings)
    from dashtam_pipeline.definitions import build_definitions

    plans = plan(build_definitions(settings))

    total_parts = sum(len(p.partitions) or 1 for p in plans)
    done = 0

    with dagster_console_to_log("materialize") as terminal:

        def progress(index: int, total: int, plan: Any) -> None:
            nonlocal done
            print(progress_bar(done, total_parts, f"run {index}/{total}: {plan.label}"),
                  file=terminal, flush=True)
            done += len(plan.partitions) or 1

        report = execute_plans(instance, plans, on_progress=progress)
        print(progress_bar(done, total_parts, f"{len(plans)} run(s) finished"), file=terminal,
              flush=True)
    print()
    for name in sorted(report.assets):
        entry = report.assets[name]
        mark = {"materialized": "ok  ", "skipped": "skip", "failed": "FAIL"}.get(
            entry.status, "----"
        )
        rows = f"{entry.rows} rows" if entry.rows is not None else ""
        print(f"{mark}  {name:<36} {rows:>12}  {entry.detail}")
    for check in report.warned_checks:
        print(f"warn  check {check} did not pass (see ops.quarantine)")
    for check in report.failed_checks:
        print(f"FAIL  blocking check {check} failed")
    failed = [n for n, a in report.assets.items() if a.status not in ("materialized", "skipped")]
    if failed or report.failed_checks:
        print(file=sys.stderr)
        for name in sorted(failed):
            detail = report.assets[name].detail or report.assets[name].status
            print(f"materialize: {name} failed: {one_line(detail)}", file=sys.stderr)
        for check in report.failed_checks:
            print(f"materialize: blocking check {check} failed", file=sys.stderr)
        names = ", ".join(failed + report.failed_checks)
        print(f"materialize failed: {names}. The runs' event logs (stack traces included) "
              f"are in the Dagster UI (`make ui`): {', '.join(report.runs)}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def progress_bar(done: int, total: int, what: str, width: int = 30) -> str:
    """``[#########.....................]  9/30 partitions  run 2/3: …``: how much of a
    multi-run materialization (a backfill) is behind us, counted in partitions (an
    unpartitioned run counts as one)."""
    filled = width * done // total if total else width
    return f"[{'#' * filled}{'.' * (width - filled)}] {done:>{len(str(total))}}/{total} " \
        f"partitions  {what}"


def cmd_materialize(args: argparse.Namespace) -> int:
    return _materialize(args.select, args.partition, args.start, args.end)


def cmd_demo(args: argparse.Namespace) -> int:
    _check_selection(args.select)  # before the demo drops files and connects users
    os.environ["DASHTAM_SANDBOX"] = "true"
    from dashtam_pipeline.demo import prepare_demo, print_row_counts

    prepare_demo()
    if args.select is None:
        # everything in one launch: a month of daily history (so the UI shows a filled
        # lineage) and every other asset, the marts after them
        from dashtam_pipeline.demo import demo_plans, recent_window

        window = recent_window()
        print(f"demo: daily history {window[1]}..{window[2]}")
        status = _execute_and_report(lambda defs: demo_plans(defs, window))
    else:
        status = _materialize(args.select, None, None, None)
    print()
    print_row_counts()
    return status


# --- query ------------------------------------------------------------------------------
def cmd_query(args: argparse.Namespace) -> int:
    """Run the analyst's SQL on the isolated warehouse connection (it reads the warehouse
    and its lake, nothing else, within the ``DASHTAM_QUERY_*`` time and memory limits: see
    ``storage.query``), and stream the rows out as DuckDB produces them, so a result larger
    than memory still comes out (``query_output`` has each format's rules: CSV neutralises
    formulas, JSON is one valid document or nothing, the table escapes control characters
    and shows a bounded number of rows).

    Only CSV can stop half way with rows already on stdout (a limit reached while
    fetching); the error sentence then says the output is incomplete."""
    from dashtam_pipeline.query_output import unique_names, write_csv, write_json, write_table
    from dashtam_pipeline.settings import load_settings
    from dashtam_pipeline.storage.warehouse import Warehouse, WarehouseError

    writer = {"csv": write_csv, "json": write_json}.get(args.format, write_table)
    started = False

    def write(columns: list[str], batches: Iterator[list[tuple[Any, ...]]]) -> None:
        nonlocal started
        started = True
        if args.format == "json" and (names := unique_names(columns)) != columns:
            renamed = ", ".join(f"{old} -> {new}" for old, new in zip(columns, names,
                                                                       strict=True)
                                if old != new)
            print(f"dashtam query: note: repeated column names were made unique in the JSON "
                  f"output ({one_line(renamed, 300)})", file=sys.stderr)
        writer(columns, batches, sys.stdout)

    settings = load_settings()
    try:
        Warehouse(settings.warehouse_path, settings.lake_dir).query_batches(args.sql, write)
    except WarehouseError as error:
        if started and args.format == "csv":
            raise WarehouseError(f"{error}; the CSV written before it is incomplete") from error
        raise
    return EXIT_OK


# --- sandbox ----------------------------------------------------------------------------
def cmd_sandbox_serve(args: argparse.Namespace) -> int:
    from dashtam_pipeline.sandbox.server import serve_forever

    serve_forever(args.host, args.port)
    return EXIT_OK


#: A TCP port: what ``bind`` accepts (0: any free port).
MAX_PORT = 65535


def _whole_number_in(low: int, high: int, what: str) -> Callable[[str], int]:
    """An argparse ``type`` taking a whole number from ``low`` to ``high``; anything else
    is argparse's usage error (which names the argument) with one sentence saying what
    ``what`` is, instead of an ``OverflowError`` from the driver or ``bind`` once the
    command is running."""

    def parse(text: str) -> int:
        try:
            number = int(text.strip())
        except ValueError:
            number = None
        if number is None or not low <= number <= high:
            raise argparse.ArgumentTypeError(
                f"{what} is a whole number from {low} to {high}, got {text[:60]!r}")
        return number

    return parse


def _host(text: str) -> str:
    """``--host``: a host name or IP address to bind, checked before any socket is made
    (a space or control character can only be a typo, and ``bind`` says just
    "Name or service not known")."""
    if not text or len(text) > 253 or any(c.isspace() or not c.isprintable() for c in text):
        raise argparse.ArgumentTypeError(
            "a host is a name or IP address such as 127.0.0.1 or 0.0.0.0, without spaces "
            f"or control characters, got {text[:60]!r}")
    return text


# --- connect / connections ------------------------------------------------------------
def _when(value: Any) -> str:
    return f"{value:%Y-%m-%d %H:%M UTC}" if value is not None else "-"


def cmd_connect(args: argparse.Namespace) -> int:
    from dashtam_pipeline import connections
    from dashtam_pipeline.domain.provider_connection import checked_alias
    from dashtam_pipeline.registry import get_provider_metadata
    from dashtam_pipeline.settings import load_settings

    try:  # named as typed (--alias), before anything is asked, read or stored
        args.alias = checked_alias(args.alias, "--alias")
    except ValueError as error:
        raise ConfigurationError(str(error)) from None
    settings = load_settings()
    user = _user_id(args.user)
    if args.stdin:
        return _connect_user_keys(args, settings, user)
    if not get_provider_metadata(args.provider).is_oauth:
        if args.code or args.redirect_url:
            raise PipelineError(f"{args.provider} uses API keys: --code and --redirect-url "
                                "are for OAuth providers")
        if user is not None:
            raise PipelineError(f"a user's own {args.provider} keys are read from standard "
                                f"input: dashtam connect {args.provider} --user {user} "
                                "--alias ALIAS --stdin")
        connection = connections.reconnect_api_key_provider(settings, args.provider)
        print(f"Connected {args.provider} ({connection.status.value}): its keys will be used "
              "again by the next run.")
        return EXIT_OK
    try:
        connection = connections.connect_oauth_provider(
            args.provider, settings, code=args.code, redirect_url=args.redirect_url,
            alias=args.alias, user_id=user,
        )
    except EOFError:
        # without --code/--redirect-url the flow reads the redirected URL from stdin; a
        # closed stdin (cron, CI, `< /dev/null`) ends that read before anything was typed
        print()  # end the prompt's line
        raise PipelineError(
            "no terminal to paste the redirect URL into: pass --code or --redirect-url"
        ) from None
    creds = connection.credentials
    print(
        f"Connected {args.provider} ({connection.status.value}): access token valid until "
        f"{_when(creds.expires_at if creds else None)}, re-login needed by "
        f"{_when(creds.refresh_expires_at if creds else None)} "
        f"(run `{connections.reconnect_command(connection)}` again "
        "before then)."
    )
    print(f"connection id: {connection.id}  user: {connection.user_id}")
    return EXIT_OK


def _user_id(text: str | None) -> uuid.UUID | None:
    """``--user``: a user id is a UUID (as in the Dashtam domain model)."""
    if text is None:
        return None
    try:
        return uuid.UUID(text)
    except ValueError:
        raise PipelineError(f"--user {text!r} is not a user id: user ids are UUIDs, e.g. "
                            "00000000-0000-5000-8000-000000000001") from None


def _connect_user_keys(args: argparse.Namespace, settings: Any, user: uuid.UUID | None) -> int:
    """``dashtam connect alpaca --user U --alias A --stdin``: the key id and the secret key
    are two lines of standard input (never arguments: those show in ``ps`` and history)."""
    from dashtam_pipeline import connections

    if user is None or not args.alias:
        raise PipelineError("--stdin stores a user's own keys: pass --user USER_ID and "
                            "--alias ALIAS")
    key_id, secret = _two_key_lines()
    connection = connections.connect_user_keys(
        settings, args.provider, user_id=user, alias=args.alias, key_id=key_id,
        secret_key=secret)
    print(f"Connected {args.provider} for user {user} as {args.alias!r} "
          f"({connection.status.value}); its keys are stored encrypted. "
          f"connection id: {connection.id}")
    return EXIT_OK


#: More than two keys' worth of standard input (two 256-character keys and their line
#: ends, with room for spaces and CRLF) is not two keys; reading stops there, so
#: ``< /dev/zero`` or a pasted file cannot fill the memory.
MAX_KEY_INPUT = 1024


def _two_key_lines() -> tuple[str, str]:
    """The key id and the secret key: exactly two non-blank lines of standard input (blank
    lines after them are allowed: a trailing newline or two). Anything else is refused in
    one sentence that never quotes the input (it is a secret): a third line means the
    keys were pasted with something else, and which line is which would be a guess.
    ``connections.connect_user_keys`` then checks each key's characters."""
    stream = getattr(sys.stdin, "buffer", None)
    data = stream.read(MAX_KEY_INPUT + 1) if stream is not None else (
        sys.stdin.read(MAX_KEY_INPUT + 1).encode("utf-8", "replace"))
    two_lines = ("standard input must hold exactly two lines, the key id then the secret "
                 "key")
    if len(data) > MAX_KEY_INPUT:
        raise PipelineError(f"{two_lines}, but it holds more than {MAX_KEY_INPUT} bytes "
                            "(not shown: it may be a secret); nothing was stored")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise PipelineError(f"{two_lines}, as text, but it is not UTF-8 text (not shown: it "
                            "may be a secret); nothing was stored") from None
    lines = text.splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    if len(lines) != 2:
        raise PipelineError(f"{two_lines}, but it holds {len(lines)} (not shown: they may be "
                            "secrets); nothing was stored")
    return lines[0], lines[1]


def _alias_cell(alias: str | None) -> str:
    """An alias as the connections table shows it. Aliases are checked when a connection
    is made (``checked_alias``), but a store written before that check may hold one with
    a newline or a terminal escape: shown escaped (``repr``) and cut, never raw."""
    if not alias:
        return "-"
    from dashtam_pipeline.domain.provider_connection import MAX_ALIAS_LENGTH

    cut = alias[:MAX_ALIAS_LENGTH] + ("..." if len(alias) > MAX_ALIAS_LENGTH else "")
    return cut if cut.isprintable() else repr(cut)


def cmd_connections(args: argparse.Namespace) -> int:
    from dashtam_pipeline.connections import connection_json, list_connections
    from dashtam_pipeline.settings import load_settings

    entries = [connection_json(c)
               for c in list_connections(load_settings(), user_id=_user_id(args.user))]
    if args.json:
        print(json.dumps(entries, indent=2))
        return EXIT_OK
    if not entries:
        print("No connections yet: set provider keys, or run `dashtam connect schwab`.")
        return EXIT_OK
    _print_table(
        ["user", "provider", "status", "alias", "expires (UTC)", "re-login by (UTC)",
         "last sync (UTC)", "id", "reason"],
        [
            [e["user_id"], e["provider"], e["status"], _alias_cell(e["alias"]),
             *(e[k][:16].replace("T", " ") if e[k] else "-"
               for k in ("expires_at", "refresh_expires_at", "last_sync_at")),
             e["id"], e["status_reason"] or ""]
            for e in entries
        ],
    )
    return EXIT_OK


# --- dlq --------------------------------------------------------------------------------
def cmd_dlq_list(args: argparse.Namespace) -> int:
    from dashtam_pipeline.resilience.dlq import DeadLetterQueue
    from dashtam_pipeline.settings import load_settings

    entries = DeadLetterQueue.from_settings(load_settings()).list(
        status=args.status, provider=args.provider
    )
    if args.json:
        print(json.dumps([e.to_json() for e in entries], indent=2))
        return EXIT_OK
    if not entries:
        print("The dead-letter queue is empty.")
        return EXIT_OK
    _print_table(
        ["id", "status", "provider", "dataset", "partition", "attempts", "replays",
         "last failed (UTC)", "error"],
        [
            [
                e.id, e.status, e.provider, e.dataset, e.partition_key or "-", e.attempts,
                e.replay_count, f"{e.last_failed_at:%Y-%m-%d %H:%M:%S}",
                (e.abandoned_reason or e.last_replay_error or e.error)[:100],
            ]
            for e in entries
        ],
    )
    return EXIT_OK


def cmd_dlq_replay(args: argparse.Namespace) -> int:
    from dashtam_pipeline.resilience.replay import replay
    from dashtam_pipeline.settings import load_settings

    settings = load_settings()
    with dagster_console_to_log("dlq replay"):
        report = replay(settings, args.ids or None)
    if not report.outcomes:
        print("Nothing to replay: no pending dead-letter entries.")
        return EXIT_OK
    for outcome in report.outcomes:
        entry = outcome.entry
        mark = "ok  " if outcome.landed else ("GAVE" if entry.status == "abandoned" else "FAIL")
        where = f"{entry.asset_key} [{entry.partition_key}]" if entry.partition_key else (
            entry.asset_key
        )
        print(f"{mark}  #{entry.id:<5} {where:<40} {entry.status:<9}  {outcome.detail}")
    if not report.ok:
        given_up = sum(o.entry.status == "abandoned" for o in report.not_landed)
        print(
            f"\ndlq replay: {len(report.not_landed)} of {len(report.outcomes)} entries did not "
            f"land ({given_up} abandoned after DASHTAM_DLQ_MAX_REPLAYS replays, the others stay "
            "pending); see `dashtam dlq list`.",
            file=sys.stderr,
        )
        return EXIT_FAILED
    return EXIT_OK


def cmd_forget(args: argparse.Namespace) -> int:
    """Erase one user (connections, credentials, rows); refuses without ``--yes``."""
    from dashtam_pipeline.erasure import forget_user
    from dashtam_pipeline.settings import load_settings

    user = _user_id(args.user)
    assert user is not None  # --user is required
    if not args.yes:
        raise PipelineError(f"forget erases every connection and row of user {user} for "
                            "good: run it again with --yes to confirm")
    for line in forget_user(load_settings(), user).lines():
        print(line)
    return EXIT_OK


def _connectable_providers() -> list[str]:
    """Schwab first (the OAuth flow), then the API-key providers."""
    from dashtam_pipeline.registry import PROVIDER_REGISTRY, ProviderAuthType

    oauth = [m.slug.value for m in PROVIDER_REGISTRY if m.is_oauth]
    keyed = [m.slug.value for m in PROVIDER_REGISTRY
             if m.auth_type is ProviderAuthType.API_KEY]
    return oauth + keyed


def build_parser() -> argparse.ArgumentParser:
    from dashtam_pipeline.resilience.dlq import MAX_ENTRY_ID

    parser = argparse.ArgumentParser(
        prog="dashtam",
        description="Dashtam data pipeline: providers, materializations and the warehouse.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("providers", help="list the provider registry and settings status")
    p.add_argument("--json", action="store_true", help="one JSON document on stdout")
    p.set_defaults(func=cmd_providers)

    p = sub.add_parser("materialize", help="materialize assets through the Dagster instance")
    p.add_argument(
        "--select", help="Dagster asset selection, e.g. 'group:market' or 'key:market/quotes'"
    )
    p.add_argument("--partition", help="one partition key (YYYY-MM-DD, or a FRED series id)")
    p.add_argument(
        "--from", dest="start",
        help="first partition key of a range; for FRED assets a date: the first observation "
        "date to backfill (with --partition SERIES, of that series only)",
    )
    p.add_argument(
        "--to", dest="end",
        help="last partition key of a range; for FRED assets a date: the last observation "
        "date to backfill",
    )
    p.set_defaults(func=cmd_materialize)

    p = sub.add_parser("demo", help="materialize everything against the built-in sandbox")
    p.add_argument("--select", help="limit the demo to an asset selection")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("query", help="run read-only SQL on the warehouse")
    p.add_argument("sql")
    p.add_argument("--format", choices=["table", "csv", "json"], default="table")
    p.set_defaults(func=cmd_query)

    p = sub.add_parser("sandbox", help="the built-in sandbox provider APIs")
    sandbox_sub = p.add_subparsers(dest="sandbox_command", required=True)
    s = sandbox_sub.add_parser("serve", help="serve the sandbox over loopback HTTP")
    s.add_argument("--host", type=_host, default="127.0.0.1")
    s.add_argument("--port", type=_whole_number_in(0, MAX_PORT, "a port"), default=8765,
                   help="TCP port, 0-65535 (0: any free port)")
    s.set_defaults(func=cmd_sandbox_serve)

    p = sub.add_parser(
        "connect",
        help="connect Schwab (OAuth authorization-code flow), or re-enable an API-key "
        "provider whose keys were refused",
    )
    p.add_argument("provider", choices=_connectable_providers())
    p.add_argument("--code", help="the authorization code (non-interactive)")
    p.add_argument("--redirect-url", help="the full URL the browser was redirected to")
    p.add_argument("--alias", help="a nickname for the connection, e.g. 'My Schwab IRA' "
                   "(unique per user and provider: a new alias is a new connection)")
    p.add_argument("--user", help="the user (UUID) the connection belongs to (default: the "
                   "operator's own user)")
    p.add_argument("--stdin", action="store_true", help="read a user's own API keys from "
                   "standard input: two lines, key id then secret key")
    p.set_defaults(func=cmd_connect)

    p = sub.add_parser("connections", help="list provider connections, statuses and expiries")
    p.add_argument("--json", action="store_true", help="one JSON document on stdout")
    p.add_argument("--user", help="only this user's connections (a UUID)")
    p.set_defaults(func=cmd_connections)

    p = sub.add_parser("forget", help="erase one user's connections, credentials and rows")
    p.add_argument("--user", required=True, help="the user (UUID) to erase")
    p.add_argument("--yes", action="store_true", help="confirm: the erasure cannot be undone")
    p.set_defaults(func=cmd_forget)

    p = sub.add_parser("dlq", help="the dead-letter queue of failed partitions, and replay")
    dlq_sub = p.add_subparsers(dest="dlq_command", required=True)
    d = dlq_sub.add_parser("list", help="list dead-letter entries")
    d.add_argument("--json", action="store_true", help="one JSON document on stdout")
    d.add_argument("--status", choices=["pending", "replayed", "abandoned"])
    d.add_argument("--provider", help="only entries of this provider slug, e.g. fmp")
    d.set_defaults(func=cmd_dlq_list)
    d = dlq_sub.add_parser("replay", help="re-materialize pending entries (default: all)")
    d.add_argument("ids", nargs="*", type=_whole_number_in(1, MAX_ENTRY_ID, "an entry id"),
                   metavar="ID", help="entry ids to replay")
    d.set_defaults(func=cmd_dlq_replay)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # Dagster's beta/preview notices (about its own selection parser, say) are for the
    # code's authors, not for a user at the terminal: the demo output stays clean.
    warnings.filterwarnings("ignore", message=r".*is currently in (beta|preview)")
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or EXIT_OK)
    except ConfigurationError as error:
        print(f"dashtam {args.command}: {one_line(str(error), 2000)}", file=sys.stderr)
        return EXIT_USAGE
    except PipelineError as error:
        print(f"dashtam {args.command}: {exception_sentence(error)}", file=sys.stderr)
        return EXIT_FAILED
    except ValidationError as error:  # a Settings() built outside load_settings
        from dashtam_pipeline.settings import settings_error_sentence

        print(f"dashtam {args.command}: {settings_error_sentence(error)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader (``| head``) went away: stop quietly, as Unix tools do
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK
    except Exception as error:
        where = _save_traceback(args.command, error)
        print(f"dashtam {args.command}: unexpected error: {exception_sentence(error)}"
              f"{f' (traceback in {where})' if where else ''}", file=sys.stderr)
        return EXIT_FAILED


def _save_traceback(command: str, error: BaseException) -> Path | None:
    """Append an unexpected error's traceback to ``logs/errors.log`` (for a bug report),
    with URL passwords redacted; None when the data dir is not writable."""
    from dashtam_pipeline.failures import redact_url_passwords

    path = _log_dir() / "errors.log"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as handle:
            handle.write(f"\n=== {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M:%S} UTC  "
                         f"dashtam {command}\n")
            handle.write(redact_url_passwords("".join(traceback.format_exception(error))))
    except OSError:
        return None
    return path


if __name__ == "__main__":
    sys.exit(main())
