"""Resources (``resources.py``): ``storage``, ``state``, one ``provider_<slug>`` per
registry entry, and ``clock``, keyed as the assets, sensors and jobs ask for them. A key
the caller of ``load_definitions(resources=...)`` supplies is left out here: the caller's
one is merged in its place."""

from dagster import Definitions, definitions

from dashtam_pipeline.defs import overridden_resources
from dashtam_pipeline.resources import build_resources


@definitions
def resources() -> Definitions:
    replaced = overridden_resources()
    return Definitions(
        resources={key: value for key, value in build_resources().items() if key not in replaced}
    )
