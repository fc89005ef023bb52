"""The UI as NiceGUI's user simulation runs it: `frontend.app.create` with settings from the environment."""

from nicegui import ui

from common.settings import Settings
from frontend.app import create

create(Settings())
ui.run(reload=False, show=False)
