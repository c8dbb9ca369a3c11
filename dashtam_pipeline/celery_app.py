"""The Celery app of this code location's workers: ``dagster-celery worker start -A
dashtam_pipeline.celery_app``.

dagster-celery's documented way to give workers their broker and settings is a module of
one's own that builds the app (instead of its default ``dagster_celery.app``, which
assumes RabbitMQ on localhost). Building it from ``executors.celery_config`` means the
workers and the run worker that submits steps read the same ``DASHTAM_CELERY_*``
variables through the same function: they cannot disagree on the broker, the backend or
how a lost worker's step is re-delivered.
"""

from __future__ import annotations

from dagster_celery.executor import CeleryExecutor
from dagster_celery.make_app import make_app
from dagster_celery.tasks import create_task

from dashtam_pipeline.executors import celery_config
from dashtam_pipeline.settings import load_settings

_config = celery_config(load_settings())
app = make_app(CeleryExecutor.for_cli(**_config).app_args())  # type: ignore[arg-type]

#: The task every step is submitted as (the name dagster-celery's executor sends).
execute_plan = create_task(app)
