"""A run's result comes back typed by its final step: a mapped final step gives the list of
its items' results (it once failed to decode: the list was read as one item's type)."""

from __future__ import annotations

from tests.testing import flows
from wfray.testing import LocalWfray


def test_a_run_ending_in_a_mapped_step_returns_its_items_results(wf: LocalWfray) -> None:
    run = wf.submit(flows.squares)
    assert run.result() == [0, 1, 4]
