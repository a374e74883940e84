"""`wfray show`: a run as a tree of its steps, their items and attempts, one page of it.

A run with 10,000 attempts is not printed whole by default: the tree holds at most
`--limit` tasks and attempts (steps in DAG order, then items and attempts in order), read
from the store a page at a time, and ends saying how many it left out and how to see them.
`--all` prints everything.
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from collections.abc import Sequence

from rich.console import Console
from rich.tree import Tree

from wfray.application.queries import Queries
from wfray.application.views import RunDetail
from wfray.domain.code_env import shown_version
from wfray.domain.masking import mask_text
from wfray.domain.records import WHOLE_STEP, AttemptRecord, RunRecord, TaskRecord
from wfray.entrypoints.cli_ids import resolve_run_id
from wfray.entrypoints.cli_read import run_or_exit, safe, styled
from wfray.entrypoints.cli_support import CliContext, CliError, Exit, plain, print_json
from wfray.entrypoints.cli_support import short_duration as took

SHOW_LIMIT = 200  # tasks and attempts in one `wfray show`, unless --limit or --all

TaskKey = tuple[str, int]


def show(ctx: CliContext, args: argparse.Namespace) -> int:
    queries, console = ctx.queries, ctx.console
    if args.limit < 1:
        raise CliError(f"--limit must be at least 1, got {args.limit}", Exit.USAGE)
    run = run_or_exit(queries, resolve_run_id(queries.store, args.run_id))
    schema = queries.store.get_workflow(run.workflow, run.version)
    after = {step.name: list(step.after) for step in schema.steps} if schema else {}
    more_children = False
    if args.all:
        detail = queries.run_detail(run.run_id)
        hidden_tasks = hidden_attempts = 0
    else:
        detail = first_page(queries, run, list(after), args.limit)
        tasks, attempts = queries.store.count_history(run.run_id)
        hidden_tasks, hidden_attempts = tasks - len(detail.tasks), attempts - len(detail.attempts)
        more_children = len(detail.children) > args.limit
        del detail.children[args.limit :]
    if args.json:
        hidden = {"tasks_not_shown": hidden_tasks, "attempts_not_shown": hidden_attempts}
        print_json(plain(detail) | hidden | {"more_child_runs": more_children})
        return Exit.OK
    console.print(run_tree(detail, after))
    if hidden_tasks or hidden_attempts:
        _say_what_is_hidden(console, run.run_id, hidden_tasks, hidden_attempts, args.limit)
    return Exit.OK


def first_page(queries: Queries, run: RunRecord, steps: Sequence[str], limit: int) -> RunDetail:
    """The run with at most `limit` tasks and attempts together, the first in the order the
    tree prints them: steps in DAG order (key order without a schema), each step's group
    row, then its items, each task followed by its attempts. Every read is a keyset page of
    at most `limit` rows: the cost depends on `limit`, not on the run's size."""
    store = queries.store
    chosen_tasks: list[TaskRecord] = []
    chosen_attempts: list[AttemptRecord] = []
    budget = limit
    walk: list[str | None] = [*steps] or [None]
    for step in walk:
        if budget <= 0:
            break
        task_start = None if step is None else (step, WHOLE_STEP - 1)
        attempt_start = None if step is None else (step, WHOLE_STEP - 1, 0)
        found_tasks = store.page_tasks(run.run_id, task_start, budget)
        found_attempts = store.page_attempts(run.run_id, attempt_start, budget)
        if step is not None:
            found_tasks = [t for t in found_tasks if t.step == step]
            found_attempts = [a for a in found_attempts if a.step == step]
        tasks, attempts = _take_in_tree_order(found_tasks, found_attempts, budget)
        chosen_tasks += tasks
        chosen_attempts += attempts
        budget -= len(tasks) + len(attempts)
    return RunDetail(
        run=run,
        tasks=chosen_tasks,
        attempts=chosen_attempts,
        children=store.child_runs([run.run_id], limit + 1),  # one more: are there more?
        claims=store.claims_of([run.run_id], limit),
    )


def _take_in_tree_order(
    tasks: list[TaskRecord], attempts: list[AttemptRecord], budget: int
) -> tuple[list[TaskRecord], list[AttemptRecord]]:
    """Tasks and attempts in key order, each task followed by its attempts, up to `budget`
    of them together."""
    taken_tasks: list[TaskRecord] = []
    taken_attempts: list[AttemptRecord] = []
    position = 0
    for task in tasks:
        if budget <= 0:
            break
        taken_tasks.append(task)
        budget -= 1
        key = (task.step, task.map_index)
        while (
            position < len(attempts)
            and (attempts[position].step, attempts[position].map_index) < key
        ):
            position += 1  # an attempt without its task row: not in this tree
        while budget > 0 and position < len(attempts):
            attempt = attempts[position]
            if (attempt.step, attempt.map_index) != key:
                break
            taken_attempts.append(attempt)
            position += 1
            budget -= 1
    return taken_tasks, taken_attempts


def _say_what_is_hidden(
    console: Console, run_id: str, tasks: int, attempts: int, limit: int
) -> None:
    console.print(
        f"[yellow]{tasks:,} more tasks and {attempts:,} more attempts not shown[/] "
        f"(at most {limit:,} shown): `wfray show {safe(run_id)} --limit N` for more, "
        "`--all` for everything; the HTTP API pages them (GET /v1/runs/{run_id}, next_cursor)",
        highlight=False,
    )


def run_tree(detail: RunDetail, after: dict[str, list[str]]) -> Tree:
    """The run as a tree: its steps in DAG order (with what each waits for), a fanned-out
    step's items under it, and every attempt under the task it tried. Each task's attempts
    and each step's items are grouped once: the tree costs linear time in its rows."""
    run = detail.run
    version = shown_version(run.version[:12], run.env_hash)
    label = (
        f"[bold]{safe(run.run_id)}[/] {safe(run.workflow)}@{version} "
        f"{styled(run.status.value)} {took(run.started_at or run.created_at, run.finished_at)}"
    )
    if run.unique_key:
        label += f" [dim]unique key {safe(run.unique_key)}[/]"
    if run.error:
        label += f"\n[red]{safe(run.error, keep_lines=True)}[/]"
    tree = Tree(label)
    attempts_of: dict[TaskKey, list[AttemptRecord]] = defaultdict(list)
    for attempt in detail.attempts:
        attempts_of[(attempt.step, attempt.map_index)].append(attempt)
    items_of: dict[str, list[TaskRecord]] = defaultdict(list)
    for task in detail.tasks:
        if task.map_index >= 0:
            items_of[task.step].append(task)
    order = {name: i for i, name in enumerate(after)}
    groups = sorted(
        (t for t in detail.tasks if t.map_index == WHOLE_STEP),
        key=lambda t: (order.get(t.step, len(order)), t.seq),
    )
    for group in groups:
        waits = f" [dim]<- {', '.join(after[group.step])}[/]" if after.get(group.step) else ""
        items = f" [dim]x{group.map_count}[/]" if group.map_count is not None else ""
        node = tree.add(f"[bold]{safe(group.step)}[/]{items} {_task_label(group)}{waits}")
        _add_attempts(node, attempts_of[(group.step, WHOLE_STEP)])
        for item in sorted(items_of[group.step], key=lambda t: t.map_index):
            label = safe(f"{item.step}[{item.map_index}]")
            item_node = node.add(f"{label} {_task_label(item)}")
            _add_attempts(item_node, attempts_of[(item.step, item.map_index)])
    if detail.claims:
        _add_claims(tree, detail)
    return tree


def _add_claims(tree: Tree, detail: RunDetail) -> None:
    held = tree.add("[bold]claims[/]")
    for claim in detail.claims:
        where = claim.holder.step + (
            f"[{claim.holder.map_index}]" if claim.holder.map_index >= 0 else ""
        )
        state = f"done {claim.result_json}" if claim.done else "held"
        label = f"{safe(claim.key)} {safe(state)} by {safe(where)}#{claim.holder.attempt}"
        if claim.taken_over_from is not None:
            label += f" [yellow]taken over from {safe(claim.taken_over_from.run_id)}[/]"
        held.add(label)


def _task_label(task: TaskRecord) -> str:
    label = f"{styled(task.status.value)} {took(task.started_at, task.finished_at)}"
    if task.attempts > 1:
        label += f" attempts={task.attempts}"
    if task.error_message:
        label += f" [red]{safe(f'{task.error_type}: {mask_text(task.error_message)[:80]}')}[/]"
    return label


def _add_attempts(node: Tree, attempts: list[AttemptRecord]) -> None:
    for attempt in sorted(attempts, key=lambda a: (a.queued_at, a.attempt)):
        kind = "undo " if attempt.kind == "compensation" else ""
        worker = f"{(attempt.node_id or '')[:8]}:{attempt.pid}" if attempt.pid else ""
        message = mask_text(attempt.error_message or "")[:80]
        error = f" [red]{safe(f'{attempt.error_type}: {message}')}[/]"
        node.add(
            f"{kind}#{attempt.attempt} {styled(attempt.status.value)} "
            f"{took(attempt.started_at, attempt.finished_at)} [dim]{worker}[/]"
            + (error if attempt.error_type else "")
        )
