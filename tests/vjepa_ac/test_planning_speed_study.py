"""The planning-speed study's conditions, results file and table (the study itself is long; BENCHMARKS.md has its
numbers)."""

import json

import pytest

from vjepa_ac.planner.cem import CEMConfig
from vjepa_ac.planner.mpc import MPCConfig
from vjepa_ac.planning_speed_study import condition_config, format_table, main, read_results


def test_each_condition_switches_on_exactly_one_option():
    base = MPCConfig(planner=CEMConfig(samples=16, topk=4))
    configs = {c: condition_config(base, c, surprise_gate=0.1, early_stop_std=0.03)
               for c in ("baseline", "warm_start", "surprise_gate", "early_stop", "bf16")}
    assert configs["baseline"] is base
    assert configs["warm_start"].planner.warm_start and not base.planner.warm_start
    assert configs["surprise_gate"].surprise_gate == 0.1 and base.surprise_gate is None
    assert configs["early_stop"].planner.early_stop_std == 0.03
    assert configs["bf16"].precision == "bfloat16" and configs["bf16"].planner == base.planner
    with pytest.raises(ValueError, match="unknown condition"):
        condition_config(base, "faster", surprise_gate=0.1, early_stop_std=0.03)


def test_table_from_a_results_file_with_a_torn_last_line(tmp_path, capsys):
    records = [{"condition": "baseline", "seed": 5000 + i, "success": i < 3, "final_distance": 0.02, "steps": 2,
                "plan_seconds": [0.5, 0.5], "seconds_per_action": [0.6, 0.6], "plans": 2, "iterations": [4, 4]}
               for i in range(4)]
    records.append({"condition": "surprise_gate", "seed": 5000, "success": True, "final_distance": 0.01, "steps": 4,
                    "plan_seconds": [0.5, 0, 0, 0.5], "seconds_per_action": [0.6, 0.1, 0.1, 0.6], "plans": 2,
                    "iterations": [4, 4]})
    path = tmp_path / "results.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records) + '{"condition": "bas')
    assert len(read_results(path)) == 5
    lines = format_table(read_results(path)).splitlines()
    assert lines[2] == "| baseline | 3/4 (75%, 30%-95%) | 4 | 0.600 | 1.00 | 4.00 | 2.0 |"
    assert lines[4] == "| surprise_gate | 1/1 (100%, 21%-100%) | 1 | 0.350 | 0.50 | 4.00 | 1.0 |"
    assert "| bf16 | not run | 0 |" in lines[3]
    assert main(["--out", str(tmp_path), "--table"]) == 0
    assert "| baseline | 3/4" in capsys.readouterr().out
