"""Data-plane tasks (run by the worker executor)."""

from common.registry import Registry

registry = Registry()
