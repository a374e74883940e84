"""Run ids wfray chooses: time-ordered by the second, random after it, safe as blob folders."""

from __future__ import annotations

import time

import pytest

from wfray.domain import ids
from wfray.domain.ids import check_run_id, new_run_id


def test_a_new_run_id_is_32_hex_digits_that_name_a_safe_folder() -> None:
    run_id = new_run_id()
    assert len(run_id) == 32 and int(run_id, 16) >= 0
    assert check_run_id(run_id) == run_id


def test_a_new_run_id_starts_with_the_second_it_was_made_in() -> None:
    before = int(time.time())
    made = int(new_run_id()[:8], 16)
    assert before <= made <= int(time.time())


def test_every_id_of_a_later_second_sorts_after_every_id_of_an_earlier_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(ids.time, "time", lambda: 1_796_300_000.999)
    earlier = [new_run_id() for _ in range(1_000)]
    monkeypatch.setattr(ids.time, "time", lambda: 1_796_300_001.0)
    later = [new_run_id() for _ in range(1_000)]
    assert max(earlier) < min(later)
    assert sorted(earlier + later) == sorted(earlier) + sorted(later)


def test_new_run_ids_differ_within_one_second() -> None:
    made = [new_run_id() for _ in range(10_000)]
    assert len(set(made)) == len(made)
