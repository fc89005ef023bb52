"""Control-plane tasks (run by the control executor): prepare_assets, publish_artifacts, get_manifest,
generate_script."""

from control.tasks.assets import registry as _assets
from control.tasks.manifest import registry as _manifest
from control.tasks.publish import registry as _publish
from control.tasks.script import registry as _script

registry = _assets.merge(_publish).merge(_manifest).merge(_script)
