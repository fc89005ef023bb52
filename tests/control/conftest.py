from __future__ import annotations

from collections.abc import Callable

import pytest

from common.settings import Settings
from tests.conftest import Plane


@pytest.fixture
def control(settings: Settings, plane_factory: Callable[..., Plane]) -> Plane:
    return plane_factory("control", settings)
