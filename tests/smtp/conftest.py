from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.smtp.sink import Handler, smtp_sink


@pytest.fixture
def sink() -> Iterator[tuple[Handler, int]]:
    with smtp_sink() as pair:
        yield pair
