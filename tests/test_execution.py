"""The ensemble planner: runs grouped by shape, at most K a group, longest ensembles first."""
from grokking_theories.config import make_run_config
from grokking_theories.execution import plan_ensembles


def _configs():
    short = [make_run_config({"seed": s, "max_steps": 100, "weight_decay": wd}) for s in range(3) for wd in (0.5, 1.0)]
    long = [make_run_config({"seed": s, "max_steps": 5000}) for s in range(2)]
    other = [make_run_config({"seed": s, "max_steps": 300, "width": 32}) for s in range(5)]
    return short + long + other


def test_every_run_once_in_groups_of_one_shape_and_at_most_k():
    configs = _configs()
    plan = plan_ensembles(configs, "cpu", 4)
    flat = [c.run_id for group in plan for c in group]
    assert sorted(flat) == sorted(c.run_id for c in configs)
    assert all(len(group) <= 4 and len({c.shape_key() for c in group}) == 1 for group in plan)


def test_the_longest_ensembles_come_first():
    # A long ensemble started last would leave the other workers idle at the end (LPT scheduling).
    plan = plan_ensembles(_configs(), "cpu", 4)
    budgets = [sum(c.budget.max_steps for c in group) for group in plan]
    assert budgets == sorted(budgets, reverse=True)
    assert {c.budget.max_steps for c in plan[0]} == {5000}
