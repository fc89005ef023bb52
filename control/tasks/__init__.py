"""Control-plane tasks (run by the control executor)."""

from common.registry import Registry

registry = Registry()
