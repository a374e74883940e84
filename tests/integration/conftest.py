"""A wfray instance per test module on the session's shared Ray instance (SQLite store)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


def start_wfray(data_dir: Path, **overrides: Any) -> Any:
    import wfray

    namespace = f"wfray-it-{uuid.uuid4().hex[:8]}"
    settings = wfray.load_settings(data_dir=str(data_dir), namespace=namespace, **overrides)
    return wfray.connect(settings)


@pytest.fixture(scope="module")
def client(ray_session: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    wf = start_wfray(tmp_path_factory.mktemp("wfray"))
    yield wf
    wf.shutdown()
