"""Where a run's steps execute: Dagster's own executors, chosen by ``DASHTAM_EXECUTOR``.

``multiprocess`` (the default) runs each step in a child process of the run worker, on one
host, forked from a ``forkserver`` that has imported the code location once
(``STEP_PRELOAD``): a step starts in a fraction of a second instead of importing Dagster,
pandas and the project again (several CPU-seconds per step, most of a short step's time).
``celery`` hands each step to ``dagster-celery`` workers through a broker (Redis in
the deployment files and tests), so steps spread over any number of hosts; nothing here is
home-made scheduling, only the configuration of Dagster's executors from the settings.

The Celery executor needs the same broker, backend and Celery settings in the run worker
(which submits) and in every Celery worker (which consumes). Both build them here, from the
same ``DASHTAM_CELERY_*`` variables: workers start with
``dagster-celery worker start -A dashtam_pipeline.celery_app`` (README "Scaling out"), whose
app is ``celery_config`` below, so the two sides cannot drift apart.
"""

from __future__ import annotations

from dagster import ExecutorDefinition, multiprocess_executor

from dashtam_pipeline.settings import Settings

#: Modules every Celery worker imports before it runs a step: the code location itself, so
#: a worker fails at start-up (not at its first step) when the code cannot load.
CELERY_INCLUDE = ["dashtam_pipeline.definitions"]


def celery_config(settings: Settings) -> dict[str, object]:
    """The ``celery_executor`` config for these settings, and the workers' app config.

    A step's task is acknowledged only after the step (``task_acks_late``), so a worker
    that dies mid-step leaves it unacknowledged: a pool process killed under a live worker
    is re-queued at once (``task_reject_on_worker_lost``); a whole worker killed (``kill
    -9``, a lost host) is re-delivered to another worker once the broker's visibility
    timeout (``DASHTAM_CELERY_VISIBILITY_TIMEOUT``) has passed, checked every
    ``unacked_restore_interval``. The timeout must exceed the longest step, or a step still
    running is delivered a second time (harmless for the lake's keyed upserts, but wasted).
    """
    if settings.dashtam_celery_broker is None:
        raise ValueError("the Celery executor needs DASHTAM_CELERY_BROKER")
    visibility = settings.dashtam_celery_visibility_timeout
    return {
        "broker": settings.dashtam_celery_broker.get_secret_value(),
        "backend": settings.celery_backend,
        "include": list(CELERY_INCLUDE),
        "config_source": {
            "task_acks_late": True,
            "task_reject_on_worker_lost": True,
            "worker_prefetch_multiplier": 1,
            "broker_transport_options": {
                # dagster-celery's own connection retry defaults, kept
                "max_retries": 3,
                "interval_start": 0,
                "interval_step": 0.2,
                "interval_max": 0.5,
                "visibility_timeout": visibility,
                "unacked_restore_interval": max(1, min(10, visibility // 4)),
                "unacked_restore_throttle": 1,
            },
        },
    }


#: What the multiprocess executor's forkserver imports before it forks step processes: the
#: code location (Dagster, pandas, pyarrow, the definitions), so each step inherits it.
STEP_PRELOAD = ["dashtam_pipeline.definitions"]


def job_executor(settings: Settings) -> ExecutorDefinition:
    """The executor every job of the code location uses (``Definitions(executor=...)``)."""
    if settings.dashtam_executor == "celery":
        from dagster_celery import celery_executor  # an optional extra: `pip install .[celery]`

        return celery_executor.configured(celery_config(settings))
    return multiprocess_executor.configured(
        {"start_method": {"forkserver": {"preload_modules": list(STEP_PRELOAD)}}},
        name="multiprocess",
    )
