"""Interval maths, aggregation and the Markdown / JSON reports of `vjepa-ac eval`."""

import json
import math

import pytest

from vjepa_ac.report import (
    EpisodeOutcome,
    EvaluationReport,
    OpenLoopError,
    OutcomeJournal,
    format_markdown,
    format_outcome_line,
    summarize,
    wilson_interval,
    write_report,
)


def _outcome(task: str, seed: int, success: bool, distance: float = 0.01) -> EpisodeOutcome:
    return EpisodeOutcome(task, seed, success, distance, steps=10, planning_seconds=(1.0, 3.0), final_energies=(0.5,))


@pytest.mark.parametrize(
    "successes, n, low, high",
    [
        # Reference values from the closed form (Wilson 1927), z = 1.959964.
        (8, 10, 0.4902, 0.9433),
        (20, 20, 0.8389, 1.0),
        (0, 20, 0.0, 0.1611),
        (13, 20, 0.4329, 0.8188),
    ],
)
def test_wilson_interval_matches_closed_form(successes, n, low, high):
    got_low, got_high = wilson_interval(successes, n)
    assert got_low == pytest.approx(low, abs=1e-4)
    assert got_high == pytest.approx(high, abs=1e-4)


def test_wilson_interval_contains_estimate_and_narrows_with_n():
    for n in (1, 5, 50, 500):
        low, high = wilson_interval(n // 2, n)
        assert 0.0 <= low <= (n // 2) / n <= high <= 1.0
    assert wilson_interval(50, 100)[1] - wilson_interval(50, 100)[0] < wilson_interval(5, 10)[1] - wilson_interval(5, 10)[0]
    assert wilson_interval(0, 0) == (0.0, 1.0)


@pytest.mark.parametrize("successes, n, confidence", [(3, 2, 0.95), (-1, 4, 0.95), (1, 4, 1.0), (1, 4, 0.0)])
def test_wilson_interval_rejects_bad_input(successes, n, confidence):
    with pytest.raises(ValueError):
        wilson_interval(successes, n, confidence)


def test_summarize_aggregates_only_its_task():
    outcomes = [_outcome("reach", 0, True, 0.02), _outcome("reach", 1, False, 0.10), _outcome("grasp", 0, True)]
    s = summarize("reach", outcomes, planner="CEM 8 x 2 x 1")
    assert (s.episodes, s.successes) == (2, 1)
    assert s.success_rate == 0.5
    assert s.mean_final_distance == pytest.approx(0.06)
    assert s.mean_planning_seconds == pytest.approx(2.0)
    assert (s.success_low, s.success_high) == pytest.approx(wilson_interval(1, 2))
    with pytest.raises(ValueError, match="pick_and_place"):
        summarize("pick_and_place", outcomes, planner="x")


def test_markdown_and_json_reports(tmp_path):
    outcomes = [_outcome("reach", i, i % 4 != 0) for i in range(8)]
    report = EvaluationReport(
        summaries=[summarize("reach", outcomes, planner="CEM 8 x 2 x 1")],
        outcomes=outcomes,
        open_loop=OpenLoopError(horizon=2, clips=3, model_l1=(0.2, 0.3), copy_l1=(0.4, 0.0)),
        meta={"checkpoint": "model.pt"},
    )
    text = format_markdown(report)
    assert "| reach | 6/8 (75%) | 8 |" in text
    assert "| 1 | 0.2000 | 0.4000 | 0.50 |" in text
    assert "`model.pt`" in text
    md_path, json_path = write_report(report, tmp_path / "out")
    assert md_path.read_text() == text
    data = json.loads(json_path.read_text())  # strict: NaN would have been written as null
    assert data["summaries"][0]["success_rate"] == 0.75
    assert len(data["outcomes"]) == 8 and data["open_loop"]["model_l1"] == [0.2, 0.3]
    assert "SUCCESS" in format_outcome_line(outcomes[1]) and "failure" in format_outcome_line(outcomes[0])


def test_no_planning_time_gives_nan_and_null_json(tmp_path):
    outcome = EpisodeOutcome("reach", 0, False, 0.3, steps=0, planning_seconds=())
    assert math.isnan(outcome.mean_planning_seconds)
    report = EvaluationReport(summaries=[summarize("reach", [outcome], "x")], outcomes=[outcome])
    _, json_path = write_report(report, tmp_path)
    assert json.loads(json_path.read_text())["summaries"][0]["mean_planning_seconds"] is None


def test_journal_returns_finished_episodes_of_the_same_settings_only(tmp_path):
    path = tmp_path / "episodes.jsonl"
    journal = OutcomeJournal(path, {"checkpoint": "a.pt", "mpc": {"samples": 128}})
    done = EpisodeOutcome("grasp", 5001, True, math.nan, steps=3, planning_seconds=(0.5,),
                          subgoal_distances=(0.02, None))
    journal.append(_outcome("grasp", 5000, False, 0.2))
    journal.append(done)
    OutcomeJournal(path, {"checkpoint": "a.pt", "mpc": {"samples": 64}}).append(_outcome("grasp", 5002, True))

    finished = OutcomeJournal(path, {"mpc": {"samples": 128}, "checkpoint": "a.pt"}).finished()
    assert sorted(finished) == [("grasp", 5000), ("grasp", 5001)]
    assert finished[("grasp", 5000)] == _outcome("grasp", 5000, False, 0.2)
    got = finished[("grasp", 5001)]
    assert math.isnan(got.final_distance) and got.subgoal_distances == (0.02, None) and got.success


def test_journal_survives_a_line_torn_by_a_kill(tmp_path):
    path = tmp_path / "episodes.jsonl"
    journal = OutcomeJournal(path, {"k": 1})
    journal.append(_outcome("reach", 1, True))
    with open(path, "a") as handle:
        handle.write('{"run": {"k": 1}, "outcome": {"task": "rea')  # killed mid-write
    journal.append(_outcome("reach", 2, False))
    assert sorted(journal.finished()) == [("reach", 1), ("reach", 2)]


def test_outcome_line_shows_where_each_sub_goal_was_left():
    outcome = EpisodeOutcome("grasp", 3, False, 0.1, steps=4, planning_seconds=(1.0,),
                             subgoal_distances=(0.012, 0.047, None))
    assert format_outcome_line(outcome).endswith("flange off each sub-goal (cm): 1.2 4.7 -")
