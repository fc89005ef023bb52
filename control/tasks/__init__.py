"""Control-plane tasks (run by the control executor): prepare_assets and publish_artifacts."""

from control.tasks.assets import registry as _assets
from control.tasks.publish import registry as _publish

registry = _assets.merge(_publish)
