"""Workflow schemas: what a definition may be, the errors a wrong one gets, and its version."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from wfray.domain.errors import CycleError, DefinitionError
from wfray.domain.policy import RetryPolicy, validate_policy
from wfray.domain.workflow import StepSchema, WorkflowSchema, find_cycle, topological_order
from wfray.sdk.definition import Workflow
from wfray.sdk.tasks import task

FN = "tests.fixtures.unit_flows:one"


def step(name: str, *after: str, **options: object) -> StepSchema:
    return StepSchema(name=name, fn=FN, after=after, **options)  # type: ignore[arg-type]


def build(*steps: StepSchema, name: str = "flow") -> WorkflowSchema:
    return WorkflowSchema.build(name, steps)


# -- functions used as steps by the decorator tests (module level: importable by path) ---------


class Order(BaseModel):
    id: int


def fetch() -> list[int]:
    return [1, 2]


def count() -> int:
    return 2


def price(fetch: int) -> int:
    return fetch


def per_unit(count: int) -> int:
    return count


def orphan(nothing: int) -> int:
    return nothing


def with_default(limit: int = 3, ctx: object = None) -> int:
    return limit


def unresolvable() -> Missing:  # type: ignore[name-defined]  # noqa: F821
    return []


def over_unresolvable(unresolvable: int) -> int:
    return unresolvable


def typed_input(input: Order) -> int:
    return input.id


def add(a: int, b: int = 1) -> int:
    return a + b


# -- cycles ------------------------------------------------------------------------------------


def test_two_step_cycle_is_named_with_its_path() -> None:
    with pytest.raises(CycleError, match=r"workflow 'flow' has a cycle: a -> b -> a"):
        build(step("a", "b"), step("b", "a"))


def test_longer_cycle_is_reported_in_execution_order() -> None:
    # b runs after a, c after b, a after c: the path follows the direction work flows
    with pytest.raises(CycleError, match=r"a -> b -> c -> a"):
        build(step("a", "c"), step("b", "a"), step("c", "b"), step("d", "c"))


def test_self_dependency_is_a_cycle() -> None:
    with pytest.raises(CycleError, match=r"cycle: a -> a"):
        build(step("a", "a"))


def test_cycle_error_is_a_definition_error_with_a_stable_code() -> None:
    with pytest.raises(DefinitionError) as caught:
        build(step("root"), step("x", "root", "y"), step("y", "x"))
    assert caught.value.code == "cycle"
    assert caught.value.message == "workflow 'flow' has a cycle: x -> y -> x"


@st.composite
def dags(draw: st.DrawFn) -> dict[str, tuple[str, ...]]:
    """Step name -> dependencies, each on earlier steps only (so acyclic)."""
    size = draw(st.integers(1, 8))
    names = [f"s{i}" for i in range(size)]
    return {
        name: tuple(draw(st.lists(st.sampled_from(names[:i]), unique=True)) if i else ())
        for i, name in enumerate(names)
    }


@settings(max_examples=60, deadline=None)
@given(dags())
def test_acyclic_graphs_have_no_cycle_and_a_topological_order(edges: dict[str, tuple[str, ...]]):
    assert find_cycle(edges) is None
    schema = build(*(step(name, *after) for name, after in reversed(edges.items())))
    order = topological_order(schema)
    assert sorted(order) == sorted(edges)
    for name, after in edges.items():
        assert all(order.index(parent) < order.index(name) for parent in after)


@settings(max_examples=60, deadline=None)
@given(dags(), st.data())
def test_a_back_edge_yields_a_real_cycle_path(
    edges: dict[str, tuple[str, ...]], data: st.DataObject
):
    names = list(edges)
    low = data.draw(st.integers(0, len(names) - 1))
    high = data.draw(st.integers(low, len(names) - 1))
    # make names[low] wait for names[high]; close the loop with a chain high -> ... -> low
    edges = dict(edges)
    edges[names[low]] = (*edges[names[low]], names[high])
    for i in range(low + 1, high + 1):
        edges[names[i]] = tuple({*edges[names[i]], names[i - 1]})
    cycle = find_cycle(edges)
    assert cycle is not None
    assert cycle[0] == cycle[-1]
    assert len(set(cycle[:-1])) == len(cycle) - 1
    for before, after in itertools.pairwise(cycle):
        assert before in edges[after]  # `after` waits for `before`: execution order


# -- names, edges and bindings -----------------------------------------------------------------


def test_unknown_dependency_names_it_and_lists_the_steps() -> None:
    with pytest.raises(DefinitionError) as caught:
        build(step("a"), step("b", "a", "ghost"))
    assert caught.value.message == (
        "workflow 'flow', step 'b': unknown dependency 'ghost' (steps: a, b)"
    )


def test_duplicate_step_is_rejected() -> None:
    with pytest.raises(DefinitionError, match=r"workflow 'flow': duplicate step 'a'"):
        build(step("a"), step("a"))


def test_duplicate_step_is_rejected_by_the_decorator() -> None:
    flow = Workflow("dupes", register=False)
    flow.step(count)
    with pytest.raises(DefinitionError, match=r"duplicate step 'count'"):
        flow.step(fetch, name="count")


@pytest.mark.parametrize(
    "bad", ["", "1st", "has space", "semi;colon", "x" * 129, "input", "ctx", "ünïcode"]
)
def test_invalid_step_names_are_rejected(bad: str) -> None:
    with pytest.raises(DefinitionError, match=rf"step name {bad!r} is invalid"):
        build(step(bad))


@pytest.mark.parametrize("good", ["a", "_private", "fetch-orders", "v1.2", "x" * 128])
def test_valid_step_names_are_accepted(good: str) -> None:
    assert build(step(good)).step_names == (good,)


@pytest.mark.parametrize("bad", ["", "my flow", "9lives", "a/b"])
def test_invalid_workflow_names_are_rejected(bad: str) -> None:
    with pytest.raises(DefinitionError, match=rf"workflow name {bad!r} is invalid"):
        build(step("a"), name=bad)


def test_a_workflow_needs_steps() -> None:
    with pytest.raises(DefinitionError, match=r"workflow 'empty' has no steps"):
        WorkflowSchema.build("empty", [])


def test_map_source_must_be_a_dependency() -> None:
    with pytest.raises(DefinitionError) as caught:
        build(step("a"), step("b"), step("c", "b", map="a"))
    assert caught.value.message == (
        "workflow 'flow', step 'c': map source 'a' must be one of its dependencies"
    )


def test_map_over_an_unknown_step_via_the_decorator_names_the_source() -> None:
    flow = Workflow("ghost_map", register=False)
    flow.step(count)
    flow.step(per_unit, map="nowhere")
    with pytest.raises(DefinitionError, match=r"step 'per_unit'.*map source 'nowhere'"):
        _ = flow.schema


def test_binding_to_a_step_that_is_not_a_dependency_is_rejected() -> None:
    with pytest.raises(DefinitionError) as caught:
        build(step("a"), step("b", bindings={"value": "a"}))
    assert caught.value.message == (
        "workflow 'flow', step 'b': parameter 'value' is bound to 'a', which is not a dependency"
    )


def test_bindings_to_input_ctx_and_input_fields_need_no_dependency() -> None:
    schema = build(step("a", bindings={"x": "input", "c": "ctx", "n": "input:n"}))
    assert schema.step("a").bindings == {"x": "input", "c": "ctx", "n": "input:n"}


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"timeout_s": 0}, "timeout_s must be positive, got 0"),
        ({"timeout_s": -1.5}, "timeout_s must be positive, got -1.5"),
        ({"num_cpus": -1}, "num_cpus must not be negative, got -1"),
    ],
)
def test_resource_options_are_checked(options: dict[str, float], expected: str) -> None:
    with pytest.raises(DefinitionError, match=rf"step 'a': {expected}"):
        build(step("a", **options))


def test_unknown_step_lookup_names_workflow_and_step() -> None:
    with pytest.raises(DefinitionError, match=r"workflow 'flow' has no step 'nope'"):
        build(step("a")).step("nope")


# -- the decorator API -------------------------------------------------------------------------


def test_parameters_bind_to_steps_input_and_ctx() -> None:
    flow = Workflow("orders", input=Order, register=False)
    flow.step(typed_input, name="load")
    flow.step(fetch, after=["load"])
    flow.step(price, map="fetch", pool="io")
    schema = flow.schema
    assert schema.input_type == f"{__name__}:Order"
    assert schema.step("load").bindings == {"input": "input"}
    assert schema.step("price").after == ("fetch",)
    assert schema.step("price").map == "fetch"
    assert schema.step("price").bindings == {"fetch": "fetch"}
    assert schema.step("price").pool == "io"
    assert schema.step("fetch").fn == f"{__name__}:fetch"


def test_parameter_that_is_neither_step_nor_input_nor_ctx_is_rejected() -> None:
    flow = Workflow("orphans", register=False)
    flow.step(count)
    flow.step(orphan)
    with pytest.raises(DefinitionError) as caught:
        _ = flow.schema
    assert caught.value.message == (
        "workflow 'orphans', step 'orphan': parameter 'nothing' is neither a step name "
        "(count, orphan), 'input' nor 'ctx'"
    )


def test_parameters_with_defaults_stay_unbound() -> None:
    flow = Workflow("defaults", register=False)
    flow.step(with_default)
    assert flow.schema.step("with_default").bindings == {"ctx": "ctx"}


def test_map_over_a_step_annotated_to_return_a_non_list_is_rejected() -> None:
    # this module uses `from __future__ import annotations`, as most code does today:
    # `count`'s return annotation is the string "int" until it is resolved
    flow = Workflow("bad_map", register=False)
    flow.step(count)
    flow.step(per_unit, map="count")
    with pytest.raises(DefinitionError) as caught:
        _ = flow.schema
    assert caught.value.message == (
        "workflow 'bad_map', step 'per_unit': maps over 'count', which returns int, not a list"
    )


def test_map_over_a_list_returning_step_is_accepted() -> None:
    flow = Workflow("good_map", register=False)
    flow.step(fetch)
    flow.step(price, map="fetch")
    assert flow.schema.step("price").map == "fetch"


def test_map_over_an_unresolvable_annotation_is_left_to_run_time() -> None:
    flow = Workflow("vague_map", register=False)
    flow.step(unresolvable)
    flow.step(over_unresolvable, map="unresolvable")
    assert flow.schema.step("over_unresolvable").map == "unresolvable"


def test_steps_defined_inside_a_function_are_rejected() -> None:
    def local() -> int:
        return 1

    flow = Workflow("locals", register=False)
    flow.step(local)
    with pytest.raises(DefinitionError, match=r"defined inside a function; define it at module"):
        _ = flow.schema


def test_task_is_a_one_step_workflow_bound_to_input_fields() -> None:
    flow = task(add).__wfray_workflow__
    schema = flow.schema
    assert schema.name == "add"
    assert schema.step("add").bindings == {"a": "input:a", "b": "input:b"}
    model = flow.input_model
    assert model.model_validate({"a": 2}).model_dump() == {"a": 2, "b": 1}
    with pytest.raises(ValidationError):
        model.model_validate({"b": 2})


# -- versions ----------------------------------------------------------------------------------


def two_steps(**retry: float) -> WorkflowSchema:
    return build(step("a"), step("b", "a", retry=RetryPolicy(**retry)))  # type: ignore[arg-type]


def test_version_is_a_stable_content_hash() -> None:
    first, second = two_steps(), two_steps()
    assert first.version == second.version
    assert len(first.version) == 16
    assert int(first.version, 16) >= 0
    # a round trip through JSON keeps it
    assert WorkflowSchema.model_validate_json(first.to_json()).version == first.version


def test_same_declaration_in_two_workflow_objects_has_one_version() -> None:
    def declare() -> WorkflowSchema:
        flow = Workflow("twice", register=False)
        flow.step(fetch)
        flow.step(price, map="fetch")
        return flow.schema

    assert declare().version == declare().version


def test_changing_a_policy_changes_the_version() -> None:
    assert two_steps().version != two_steps(max_attempts=5).version
    assert two_steps().version != two_steps(jitter=0.1).version


def test_changing_a_pool_or_an_edge_changes_the_version() -> None:
    base = build(step("a"), step("b", "a"))
    assert base.version != build(step("a"), step("b", "a", pool="io")).version
    assert base.version != build(step("a"), step("b")).version


# -- shape -------------------------------------------------------------------------------------


def test_downstream_and_sinks() -> None:
    schema = build(step("a"), step("b", "a"), step("c", "a"), step("d", "b", "c"), step("e"))
    assert schema.downstream() == {
        "a": ("b", "c"),
        "b": ("d",),
        "c": ("d",),
        "d": (),
        "e": (),
    }
    assert schema.sinks() == ("d", "e")
    assert schema.step_names == ("a", "b", "c", "d", "e")


# -- retry policies ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"initial_delay_s": -1}, "initial_delay_s must not be negative, got -1"),
        ({"max_delay_s": -0.5}, "max_delay_s must not be negative, got -0.5"),
        ({"max_attempts": 0}, "max_attempts must be at least 1, got 0"),
        ({"jitter": 1.5}, "jitter must be between 0 and 1, got 1.5"),
        ({"jitter": -0.1}, "jitter must be between 0 and 1, got -0.1"),
        ({"backoff": 0.5}, "backoff must be at least 1, got 0.5"),
        ({"max_lost_attempts": -1}, "max_lost_attempts must not be negative, got -1"),
    ],
)
def test_bad_retry_policies_are_rejected_naming_the_field(
    fields: dict[str, float], named: str
) -> None:
    with pytest.raises(ValidationError, match=named):
        RetryPolicy(**fields)  # type: ignore[arg-type]


def test_unknown_retry_option_is_rejected() -> None:
    with pytest.raises(ValidationError, match="max_tries"):
        RetryPolicy(max_tries=3)  # type: ignore[call-arg]


def test_retry_must_be_a_policy_naming_the_step() -> None:
    with pytest.raises(DefinitionError, match=r"step 'pay': retry must be a RetryPolicy, got dict"):
        validate_policy("pay", {"max_attempts": 3})
    flow = Workflow("policies", register=False)
    with pytest.raises(DefinitionError, match=r"step 'count': retry must be a RetryPolicy"):
        flow.step(count, retry=3)  # type: ignore[arg-type]


def test_a_chain_of_five_thousand_steps_validates_without_recursion_limits() -> None:
    from wfray.domain.workflow import StepSchema, WorkflowSchema, find_cycle

    steps = [StepSchema(name="s0", fn="m:f")]
    steps += [StepSchema(name=f"s{i}", fn="m:f", after=(f"s{i - 1}",)) for i in range(1, 5000)]
    schema = WorkflowSchema.build("long", steps)
    assert schema.sinks() == ("s4999",)
    edges = {f"s{i}": [f"s{i - 1}"] for i in range(1, 5000)} | {"s0": ["s4999"]}
    cycle = find_cycle(edges)
    assert cycle is not None and cycle[0] == cycle[-1] and len(cycle) == 5001


def test_retry_precedence_is_override_then_step_then_workflow_then_global() -> None:
    from wfray.domain.policy import RetryPolicy
    from wfray.domain.workflow import StepSchema, WorkflowSchema

    step_policy = RetryPolicy(max_attempts=2)
    workflow_policy = RetryPolicy(max_attempts=3)
    override = RetryPolicy(max_attempts=4)
    fallback = RetryPolicy(max_attempts=5)
    steps = [StepSchema(name="own", fn="m:f", retry=step_policy), StepSchema(name="bare", fn="m:f")]
    with_default = WorkflowSchema.build("w", steps, default_retry=workflow_policy)
    without = WorkflowSchema.build("w", steps)
    assert with_default.retry_for("own", override, fallback) is override
    assert with_default.retry_for("own", None, fallback) is step_policy
    assert with_default.retry_for("bare", None, fallback) is workflow_policy
    assert without.retry_for("bare", None, fallback) is fallback


def test_a_compensation_that_is_not_a_module_level_function_is_rejected() -> None:
    from wfray.domain.errors import DefinitionError
    from wfray.sdk.definition import Workflow

    flow = Workflow("bad_undo", register=False)
    with pytest.raises(DefinitionError, match=r"step 'charge': compensate must be a module-level"):

        @flow.step(compensate="refund")  # type: ignore[arg-type]
        def charge() -> int:
            return 1

    def local_refund(result: int) -> None: ...

    with pytest.raises(DefinitionError, match=r"step 'charge': compensate must be"):

        @flow.step(compensate=local_refund)
        def charge() -> int:
            return 1


def test_a_compensation_with_an_unknown_parameter_is_rejected() -> None:
    from tests.fixtures import unit_flows
    from wfray.domain.errors import DefinitionError
    from wfray.sdk.definition import Workflow

    flow = Workflow("bad_undo_params", register=False)
    with pytest.raises(DefinitionError, match=r"compensation parameter 'what' must be"):

        @flow.step(compensate=unit_flows.count)  # count(what, ctx): `what` is not allowed
        def charge() -> int:
            return 1
