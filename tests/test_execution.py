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


# ------------------------------------------------------------ measured step rates, K and the estimate

class _FakeRates:
    """Step costs of a launch-bound device: 1 ms per ensemble step up to 8 members, then linear (busy)."""

    device = "cuda"
    measured = 0
    path = "fake"

    def __init__(self, bytes_per_member=1_000):
        self.bytes_per_member = bytes_per_member
        self.asked = []

    def free_memory(self):
        return 10**12

    def cost(self, config, k):
        from grokking_theories.execution.throughput import StepCost

        self.asked.append(k)
        return StepCost(step=1e-3 * max(1.0, k / 8), evaluate=0.0, memory=self.bytes_per_member * k)


def test_gpu_ensemble_size_is_where_throughput_stops_growing():
    from grokking_theories.execution.throughput import choose_ensemble_size

    cfg = make_run_config({"max_steps": 100})
    rates = _FakeRates()
    # throughput doubles up to K = 8, then stays flat: 16 gains nothing, so the search stops and 8 is chosen
    assert choose_ensemble_size(cfg, 500, rates, free_memory=10**12) == 8
    assert rates.asked == [1, 2, 4, 8, 16]
    assert choose_ensemble_size(cfg, 5, _FakeRates(), free_memory=10**12) == 5  # never more than the runs
    # memory: the next doubling must fit in MEMORY_SHARE of the free memory
    assert choose_ensemble_size(cfg, 500, _FakeRates(bytes_per_member=150), free_memory=1_000) == 4  # 8 needs 1,200


def test_gpu_plan_uses_the_measured_size():
    cfgs = [make_run_config({"seed": s, "max_steps": 100}) for s in range(20)]

    class Rates(_FakeRates):
        def cost(self, config, k):
            from grokking_theories.execution.throughput import StepCost
            return StepCost(step=1e-3 * max(1.0, k / 4), evaluate=0.0, memory=0)

    plan = plan_ensembles(cfgs, "cuda", rates=Rates())
    assert sorted(len(g) for g in plan) == [4] * 5  # throughput flat beyond 4 members


def test_estimate_schedules_the_longest_ensembles_first_on_the_workers():
    from grokking_theories.execution.throughput import CPU_SHARED_SLOWDOWN, StepCost, estimate_training

    class Rates(_FakeRates):
        def cost(self, config, k):
            return StepCost(step=1e-3, evaluate=0.0, memory=0)

    plan = [[make_run_config({"max_steps": n})] for n in (3000, 2000, 2000, 1000)]
    # two workers, longest first: [3 s, then 1 s] and [2 s, 2 s] -> 4 s, each ensemble slowed by sharing the CPU
    est = estimate_training(plan, "cpu", 2, Rates())
    assert abs(est.seconds - 4.0 * CPU_SHARED_SLOWDOWN) < 1e-9 and est.ensembles == 4
    assert "at most" in est.text() and "full step budget" in est.text()
    assert abs(estimate_training(plan, "cpu", 1, Rates()).seconds - 8.0) < 1e-9


def test_step_rates_are_measured_once_per_machine_and_a_bad_cache_is_said(tmp_path, tiny_cfg):
    import warnings

    from grokking_theories.execution.throughput import StepRates

    path = tmp_path / "rates.json"
    first = StepRates("cpu", path)
    cost = first.cost(tiny_cfg(), 2)
    assert cost.step > 0 and cost.evaluate > 0 and first.measured == 1
    again = StepRates("cpu", path)
    assert again.cost(tiny_cfg(), 2) == cost and again.measured == 0  # read from the cache
    assert again.cost(tiny_cfg(width=32), 2) != cost and again.measured == 1  # another shape is measured
    path.write_text("{not json")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        broken = StepRates("cpu", path)
    assert any(str(path) in str(w.message) for w in caught)
    broken.cost(tiny_cfg(), 2)
    assert broken.measured == 1 and StepRates("cpu", path).cost(tiny_cfg(), 2).step > 0


def test_a_step_costs_key_is_what_changes_a_steps_cost():
    """Seeds, budgets and per-member values share one measured cost; the model's shape, the loss, K do not."""
    from grokking_theories.execution.throughput import cost_key

    base = make_run_config({"max_steps": 100})
    assert cost_key(base, 2) == cost_key(make_run_config({"seed": 3, "max_steps": 7, "lr": 0.1, "alpha": 2.0}), 2)
    for other in ({"width": 64}, {"loss_fn": "stablemax"}, {"orthograd": True}, {"train_frac": 0.3},
                  {"fixed_norm": 1.5}):
        assert cost_key(make_run_config({"max_steps": 100, **other}), 2) != cost_key(base, 2), other
    assert cost_key(base, 4) != cost_key(base, 2)
