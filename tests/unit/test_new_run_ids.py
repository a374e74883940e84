"""Run ids wfray chooses: UUIDv7, time-ordered, safe as blob folders."""

from __future__ import annotations

import time
import uuid

from wfray.domain.ids import check_run_id, new_run_id


def test_a_new_run_id_is_a_uuid7_in_32_hex_digits_that_names_a_safe_folder() -> None:
    run_id = new_run_id()
    parsed = uuid.UUID(run_id)
    assert (len(run_id), parsed.version, parsed.variant) == (32, 7, uuid.RFC_4122)
    assert check_run_id(run_id) == run_id


def test_new_run_ids_carry_the_time_so_later_ones_sort_after_earlier_ones() -> None:
    before_ms = time.time_ns() // 1_000_000
    first = new_run_id()
    while time.time_ns() // 1_000_000 <= before_ms + 1:  # the next millisecond, at least
        pass
    later = new_run_id()
    assert first < later
    assert before_ms <= uuid.UUID(first).int >> 80 <= before_ms + 1


def test_new_run_ids_differ_within_one_millisecond() -> None:
    ids = [new_run_id() for _ in range(10_000)]
    assert len(set(ids)) == len(ids)
