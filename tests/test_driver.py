"""The driver's ask/tell loop with several workers, on a stand-in pool (no model, no Ray)."""

from __future__ import annotations

import pytest

from autosel.catalog import list_activations
from autosel.optimise.driver import Driver
from autosel.optimise.selection import Candidate
from autosel.optimise.strategies import make_strategy
from autosel.optimise.study import completed, open_storage, open_study

IDS = ("up-level0-repeat0-res-out", "up-level1-repeat0-res-out", "up-level2-repeat0-res-out")
SCORES = {IDS[0]: 0.1, IDS[1]: 0.2, IDS[2]: 0.9}  # a set scores the sum of its members


def catalogue_and_candidates():
    catalogue = {point.id: point for point in list_activations("tiny", 64)}
    return catalogue, [Candidate(name, (50,), catalogue[name].channels, catalogue[name].depth) for name in IDS]


class OneAtATimePool:
    """Three workers that finish one trial per poll, oldest first."""

    def __init__(self) -> None:
        self.busy: list[tuple[int, tuple]] = []

    def idle(self) -> int:
        return 3 - len(self.busy)

    def submit(self, tag, items, pairs) -> None:
        self.busy.append((tag, items))

    def poll(self, timeout):
        if self.busy:
            tag, items = self.busy.pop(0)
            yield tag, {"score": sum(SCORES[name] for name, _, _ in items)}, None


def test_greedy_judges_a_round_only_after_all_its_parallel_trials_finish(tmp_path):
    catalogue, candidates = catalogue_and_candidates()
    strategy = make_strategy("greedy", candidates, 2, 0)
    storage = open_storage(f"sqlite:///{tmp_path / 'db.sqlite'}")
    study = open_study(storage, "greedy", {"model": "tiny"}, strategy.sampler())
    Driver(study, storage, strategy, OneAtATimePool(), candidates, catalogue, 2, None, progress=False, poll_seconds=0.01).run(20)
    extensions = [{name for name, _, _ in t.user_attrs["items"]} for t in completed(study) if len(t.user_attrs["items"]) == 2]
    assert len(completed(study)) == 5 and len(extensions) == 2  # 3 singles, then the best one's 2 extensions
    assert all(IDS[2] in names for names in extensions)  # of the best single, not of the first to finish


def test_a_trial_whose_driver_died_before_its_first_heartbeat_is_failed_not_waited_for(tmp_path):
    import threading
    import time

    from optuna.trial import TrialState

    catalogue, candidates = catalogue_and_candidates()
    strategy = make_strategy("random", candidates, 2, 0)
    storage = open_storage(f"sqlite:///{tmp_path / 'db.sqlite'}", heartbeat=1, grace=1)
    study = open_study(storage, "orphan", {"model": "tiny"}, strategy.sampler())
    orphan = study.ask()  # a driver killed right here leaves a RUNNING trial with no heartbeat
    time.sleep(1.5)
    driver = Driver(study, storage, strategy, OneAtATimePool(), candidates, catalogue, 2, None, progress=False, poll_seconds=0.01)
    run = threading.Thread(target=driver.run, args=(2,), daemon=True)
    run.start()
    run.join(timeout=20)
    assert not run.is_alive(), "the driver is still waiting on the orphaned trial"
    assert study.get_trials(deepcopy=False)[orphan.number].state == TrialState.FAIL
    assert len(completed(study)) == 2


MORE_IDS = tuple(f"up-level{level}-repeat{repeat}-res-out" for level in range(3) for repeat in range(2))


def distinct_selections(study) -> int:
    return len({t.user_attrs["selection"] for t in completed(study)})


def more_candidates():
    catalogue = {point.id: point for point in list_activations("tiny", 64)}
    return catalogue, [Candidate(name, (50, 150), catalogue[name].channels, catalogue[name].depth) for name in MORE_IDS]


class ScoredPool(OneAtATimePool):
    """Scores a set by a fixed per-(id, timestep) table, so every driver sees the same landscape."""

    def poll(self, timeout):
        if self.busy:
            tag, items = self.busy.pop(0)
            yield tag, {"score": sum((MORE_IDS.index(name) + 1) * (1 + t) % 7 / 10 for name, t, _ in items)}, None


def run_driver(storage, study, strategy_name, seed, trials):
    catalogue, candidates = more_candidates()
    strategy = make_strategy(strategy_name, candidates, 3, seed)
    Driver(study, storage, strategy, ScoredPool(), candidates, catalogue, 3, None, progress=False, poll_seconds=0.01).run(trials)


@pytest.mark.slow
def test_a_resumed_greedy_driver_continues_the_walk_instead_of_repeating_it(tmp_path):
    storage = open_storage(f"sqlite:///{tmp_path / 'db.sqlite'}")
    uninterrupted = open_study(storage, "one", {"model": "tiny"}, make_strategy("greedy", [], 3, 0).sampler())
    run_driver(storage, uninterrupted, "greedy", 0, 30)
    resumed = open_study(storage, "two", {"model": "tiny"}, make_strategy("greedy", [], 3, 0).sampler())
    for trials in (7, 13, 22, 30):  # a new strategy object each time, as a restarted process has
        run_driver(storage, resumed, "greedy", 0, trials)
    assert len(completed(resumed)) == len(completed(uninterrupted))
    assert distinct_selections(resumed) == distinct_selections(uninterrupted) == len(completed(resumed))
    assert {t.user_attrs["selection"] for t in completed(resumed)} == {t.user_attrs["selection"] for t in completed(uninterrupted)}


@pytest.mark.slow
def test_drivers_taking_turns_on_one_study_never_rerun_a_selection(tmp_path):
    storage = open_storage(f"sqlite:///{tmp_path / 'db.sqlite'}")
    study = open_study(storage, "turns", {"model": "tiny"},
                       make_strategy("greedy", [], 3, 0).sampler())
    for trials, seed in ((5, 1), (10, 2), (15, 1), (20, 2)):
        run_driver(storage, study, "greedy", seed, trials)
    assert distinct_selections(study) == len(completed(study)) == 20


@pytest.mark.slow
def test_a_resumed_exhaustive_driver_skips_the_sets_already_run(tmp_path):
    storage = open_storage(f"sqlite:///{tmp_path / 'db.sqlite'}")
    study = open_study(storage, "all", {"model": "tiny"},
                       make_strategy("exhaustive", [], 3, 0).sampler())
    for trials in (10, 25):
        run_driver(storage, study, "exhaustive", 0, trials)
    assert distinct_selections(study) == len(completed(study)) == 25


def test_a_greedy_plan_recognises_its_trials_when_they_suggest_fewer_parameters_than_were_queued():
    import optuna

    from autosel.optimise.selection import suggest

    catalogue, candidates = more_candidates()
    strategy = make_strategy("greedy", candidates, 3, 1)
    study = optuna.create_study(direction="maximize", sampler=strategy.sampler())
    seen = []
    for _ in range(30):  # 12 singles, then 10 extensions of the best, then the next round
        study.enqueue_trial(strategy.next_params(study))
        trial = study.ask()
        selection = suggest(trial, candidates, 3, weights=False)  # the queued w0=1, w1=1 are not suggested
        seen.append(selection.key)
        study.tell(trial, sum((MORE_IDS.index(name) + 1) * (1 + t) % 7 / 10 for name, t, _ in selection.items))
    assert len(set(seen)) == 30


def test_a_space_counts_its_distinct_selections_with_their_weights():
    from autosel.optimise.strategies import count_selections

    _, candidates = catalogue_and_candidates()  # three candidates, one timestep each
    assert count_selections(candidates, 1) == 3
    assert count_selections(candidates, 2) == 3 + 3 * 3**2  # 3 pairs, each with 3 × 3 weightings
    assert count_selections(candidates, 2, weights=False) == 6


@pytest.mark.parametrize("strategy_name", ["random", "tpe", "greedy-tpe"])
def test_a_space_smaller_than_the_trials_stops_when_all_are_evaluated_without_copies(tmp_path, strategy_name):
    catalogue, candidates = catalogue_and_candidates()
    strategy = make_strategy(strategy_name, candidates, 2, 0, trials=400)
    storage = open_storage(f"sqlite:///{tmp_path / 'db.sqlite'}")
    study = open_study(storage, "small", {"model": "tiny"}, strategy.sampler())
    stats = Driver(study, storage, strategy, OneAtATimePool(), candidates, catalogue, 2, None, progress=False,
                   poll_seconds=0.01).run(400)
    assert stats.duplicates == 0 and stats.evaluated == 30
    assert distinct_selections(study) == len(completed(study)) == 30
