"""The provider in process: the composed app under WebTest."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import webtest

from oauth_tai.settings import Settings
from oauth_tai.system import build_system
from tests.oauth_client import InProcessProvider


@pytest.fixture
def anonymous(settings: Settings) -> Iterator[InProcessProvider]:
    """The app with a user and a consumer, and a browser nobody logged in to."""
    system = build_system(settings)
    yield InProcessProvider.create(webtest.TestApp(system.app), system.provider)
    system.provider.engine.dispose()


@pytest.fixture
def site(anonymous: InProcessProvider) -> InProcessProvider:
    """The same, with the user logged in."""
    answer = anonymous.log_in()
    assert answer.status_int == 303, answer.text
    return anonymous
