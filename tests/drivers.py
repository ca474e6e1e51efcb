"""Import `berth_on_every_driver` into a test module to run its tests against each storage
driver: it takes the place of the `berth` fixture there."""

from __future__ import annotations

import pytest

from .servers import BerthServer


@pytest.fixture(name="berth", scope="session")
def berth_on_every_driver(registry_server: BerthServer) -> BerthServer:
    return registry_server
