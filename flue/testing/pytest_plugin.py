"""pytest fixtures for testing Flue agents.

Enable them in a test module (or a ``conftest.py``)::

    pytest_plugins = ["flue.testing.pytest_plugin"]

- ``scripted_model_server``: a started :class:`~flue.testing.ScriptedModelServer`
  on ``127.0.0.1`` (closed after the test). Add turns with
  ``scripted_model_server.add(reply("hi"))`` and point a provider at
  ``scripted_model_server.url``.
- ``scripted_model``: a fresh in-process :class:`~flue.testing.ScriptedModel`.

Needs ``pytest-asyncio``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from flue.testing.model_server import ScriptedModelServer
from flue.testing.scripted import ScriptedModel


@pytest_asyncio.fixture
async def scripted_model_server() -> AsyncIterator[ScriptedModelServer]:
    async with ScriptedModelServer() as server:
        yield server


@pytest.fixture
def scripted_model() -> ScriptedModel:
    return ScriptedModel()
