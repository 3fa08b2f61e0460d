"""The closed-loop plumbing: sim episodes through `run_mpc`, videos, reports, open-loop error maths.

The world model here is a random-initialised tiny one (the real default model is exercised by the slow demo test);
these tests check wiring and numbers, not planning quality.
"""

import dataclasses
import json

import numpy as np
import pytest
import torch

from vjepa_ac.model_card import PlanningDefaults, PlanningOverrides, mpc_config_for
from vjepa_ac.planner.mppi import MPPIConfig
from vjepa_ac import closed_loop
from vjepa_ac.closed_loop import describe_planner, run_episode, video_from_log
from vjepa_ac.heldout import episodes_per_task
from vjepa_ac.openloop import open_loop_error
from vjepa_ac.worldmodel import build_encoder, build_predictor, normalize_reps
from vjepa_ac.worldmodel.world_model import WorldModel

# A small sim scene and CEM so episodes are quick (model cards themselves are tested in tests/planner).
CARD = {
    "crop": "square",
    "fps": 15.0,
    "sim": {"image_size": [90, 160]},
    "planner": {"samples": 16, "iterations": 2, "topk": 4, "horizon": 1},
}


@pytest.fixture(scope="module")
def tiny_world_model() -> WorldModel:
    torch.manual_seed(0)
    encoder = build_encoder("vit_tiny").eval()
    predictor = build_predictor("vit_ac_tiny").eval()
    return WorldModel(encoder=encoder, predictor=predictor, crop="square")


def test_episodes_per_task():
    assert episodes_per_task(6, ["a", "b", "c", "d"]) == {"a": 2, "b": 2, "c": 1, "d": 1}
    assert episodes_per_task(1, ["a", "b"]) == {"a": 1}
    with pytest.raises(ValueError):
        episodes_per_task(-1, ["a"])


def test_sim_episode_through_run_mpc(tiny_world_model):
    defaults = PlanningDefaults.from_card(CARD)
    overrides = PlanningOverrides(samples=4, iterations=1, horizon=1, topk=2, max_steps=2)
    config = mpc_config_for(defaults, "reach", overrides)
    assert describe_planner(config) == "CEM 4 samples x 1 iters x horizon 1 (top 2)"
    mppi = dataclasses.replace(config, planner=MPPIConfig(samples=4, iterations=1, temperature=0.5))
    assert describe_planner(mppi) == "MPPI 4 samples x 1 iters x horizon 1 (temperature 0.5)"
    outcome, episode_log, robot = run_episode(tiny_world_model, "reach", 3, config, fps=5.0,
                                              sim_options=defaults.sim)
    try:
        assert outcome.task == "reach" and outcome.seed == 3 and outcome.steps == 2
        assert len(outcome.planning_seconds) == 2 and all(s > 0 for s in outcome.planning_seconds)
        assert 0.0 < outcome.final_distance < 1.0 and not outcome.success
        # One sub-goal, left at the end: the flange's distance to it is the reach distance.
        assert outcome.subgoal_distances == pytest.approx((outcome.final_distance,))
        video = video_from_log("reach", episode_log)
        assert len(video.frames) == 3 and video.energy_at_frame == [1, 2, 2]
        assert video.frames[0].camera.shape == (90, 160, 3)
    finally:
        robot.close()


def test_open_loop_error_matches_a_forward_rollout(tiny_world_model):
    wm = tiny_world_model
    rng = np.random.default_rng(0)
    horizon = 3
    states = torch.tensor(rng.normal(0, 0.1, (horizon + 1, 7)), dtype=torch.float32)
    clip = {
        "frames": torch.tensor(rng.integers(0, 255, (horizon + 1, 48, 64, 3)), dtype=torch.uint8),
        "actions": torch.tensor(rng.normal(0, 0.02, (horizon, 7)), dtype=torch.float32),
        "states": states,
    }
    result = open_loop_error(wm, [clip, clip], horizon=horizon)
    assert result.clips == 2 and len(result.model_l1) == horizon

    # Independent check: re-run the whole imagined history through `forward` at every step.
    from vjepa_ac.data.droid.poses import apply_actions

    z = wm.encode(clip["frames"][None])[0]
    frames, imagined_states, predictions = [z[0]], [clip["states"][0].double()], []
    for k in range(horizon):
        out = wm.predictor(torch.cat(frames)[None], clip["actions"][None, : k + 1],
                           torch.stack(imagined_states).float()[None])
        frames.append(normalize_reps(out[0, -wm.tokens_per_frame:]))
        predictions.append(frames[-1])
        imagined_states.append(apply_actions(imagined_states[-1], clip["actions"][k].double()))
    for k in range(horizon):
        assert result.model_l1[k] == pytest.approx((predictions[k] - z[k + 1]).abs().mean().item(), abs=1e-5)
        assert result.copy_l1[k] == pytest.approx((z[0] - z[k + 1]).abs().mean().item(), abs=1e-6)
    with pytest.raises(ValueError, match="needs at least"):
        open_loop_error(wm, [clip], horizon=horizon + 1)
    with pytest.raises(ValueError, match="no clips"):
        open_loop_error(wm, [], horizon=1)


def test_closed_loop_module_imports_lazily():
    # `vjepa-ac --help` must stay fast: the app module does not import the closed loop at import time.
    from vjepa_ac import app

    assert "closed_loop" not in vars(app)
    assert closed_loop.PlanningDefaults().fps == 4.0


def test_eval_and_demo_commands_end_to_end(tmp_path, tiny_world_model, monkeypatch):
    """`vjepa-ac eval` and `demo` on a saved tiny checkpoint: tables, JSON, held-out open-loop error and the MP4."""
    from vjepa_ac.cli import main
    from vjepa_ac.worldmodel import save_ac_checkpoint

    checkpoint = tmp_path / "tiny.pt"
    save_ac_checkpoint(checkpoint, encoder=tiny_world_model.encoder, predictor=tiny_world_model.predictor)
    checkpoint.with_suffix(".json").write_text(json.dumps(CARD))
    common = ["--checkpoint", str(checkpoint), "--samples", "4", "--iterations", "1", "--max-steps", "2"]
    out = tmp_path / "eval"
    assert main(["eval", "--task", "reach", "--episodes", "2", "--seed", "5", "--out", str(out),
                 "--open-loop-episodes", "1", "--open-loop-horizon", "2", "--landscape-goals", "1", *common]) == 0
    report = json.loads((out / "report.json").read_text())
    assert [o["seed"] for o in report["outcomes"]] == [5, 6]
    assert report["summaries"][0]["episodes"] == 2
    assert report["open_loop"]["clips"] == 1 and len(report["open_loop"]["model_l1"]) == 2
    assert report["landscape"]["goals"] == 1 and -1.0 <= report["landscape"]["rank_correlation"] <= 1.0
    assert (out / "energy_landscape.png").stat().st_size > 0
    assert "| reach |" in (out / "report.md").read_text() and "Energy landscape" in (out / "report.md").read_text()
    # Rerun with a third episode, as after a kill: the two journalled episodes are taken over, not run again.
    ran = []
    real_run_episode = closed_loop.run_episode

    def counting_run_episode(*args, **kwargs):
        ran.append(args[2])
        return real_run_episode(*args, **kwargs)

    monkeypatch.setattr(closed_loop, "run_episode", counting_run_episode)
    assert main(["eval", "--task", "reach", "--episodes", "3", "--seed", "5", "--out", str(out),
                 "--open-loop-episodes", "0", "--landscape-goals", "0", *common]) == 0
    assert ran == [7]
    resumed = json.loads((out / "report.json").read_text())
    assert resumed["outcomes"][:2] == report["outcomes"] and resumed["summaries"][0]["episodes"] == 3
    # Other planner settings are another run: nothing is taken over.
    assert main(["eval", "--task", "reach", "--episodes", "1", "--seed", "5", "--out", str(out),
                 "--open-loop-episodes", "0", "--landscape-goals", "0", *common, "--horizon", "2"]) == 0
    assert ran == [7, 5]
    monkeypatch.undo()
    # --episodes 0: only the encoder's energy landscape (and open-loop error), no closed-loop table.
    only = tmp_path / "landscape_only"
    assert main(["eval", "--episodes", "0", "--out", str(only), "--open-loop-episodes", "0",
                 "--landscape-goals", "1", *common]) == 0
    landscape_only = json.loads((only / "report.json").read_text())
    assert landscape_only["summaries"] == [] and landscape_only["outcomes"] == []
    assert -1.0 <= landscape_only["landscape"]["near_cube_rank_correlation"] <= 1.0
    assert len(landscape_only["landscape"]["near_cube_axis_share"]) == 3
    assert "No closed-loop episodes" in (only / "report.md").read_text()
    # --landscape-encoder: the same landscape scored with another encoder file. The model's own encoder saved as
    # a file scores exactly what the model does; another random encoder scores differently.
    from vjepa_ac.recipe import init_encoder

    landscapes = {}
    for seed in (0, 1):
        encoder_file = init_encoder(tmp_path / f"encoder_{seed}.pt", preset="vit_tiny", img_size=64,
                                    patch_size=None, seed=seed)
        swapped = tmp_path / f"landscape_encoder_{seed}"
        assert main(["eval", "--episodes", "0", "--out", str(swapped), "--open-loop-episodes", "0",
                     "--landscape-goals", "1", "--landscape-encoder", str(encoder_file), *common]) == 0
        report = json.loads((swapped / "report.json").read_text())
        assert report["meta"]["landscape encoder"] == str(encoder_file)
        landscapes[seed] = report["landscape"]
    assert landscapes[0] == landscape_only["landscape"]
    assert landscapes[1]["rank_correlation"] != landscapes[0]["rank_correlation"]
    # It scores only the landscape: with closed-loop episodes it is a usage error (exit 2), and nothing is written.
    refused = tmp_path / "refused"
    assert main(["eval", "--episodes", "1", "--out", str(refused), "--open-loop-episodes", "0",
                 "--landscape-encoder", str(encoder_file), *common]) == 2
    assert not refused.exists()
    # A corrupt encoder file fails before any work: an error (exit 1), no report.
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a checkpoint")
    assert main(["eval", "--episodes", "0", "--out", str(refused), "--open-loop-episodes", "0",
                 "--landscape-encoder", str(corrupt), *common]) == 1
    assert not refused.exists()
    demo = tmp_path / "demo"
    assert main(["demo", "--task", "reach", "--episodes", "1", "--out", str(demo), *common]) == 0
    assert (demo / "summary.json").is_file() and (demo / "demo.mp4").stat().st_size > 0


def test_eval_runs_a_meta_layout_checkpoint_without_card(tmp_path):
    """A checkpoint in the layout of Meta's vjepa2-ac-vitg.pt (the reference fixture, no model card) gets the paper's
    planner defaults and 4 fps; command-line options still shrink the CEM for a quick run."""
    from pathlib import Path

    from vjepa_ac.cli import main

    fixture = Path(__file__).resolve().parents[1] / "fixtures" / "vjepa2_reference" / "vjepa2-ac-tiny.pt"
    assert main(["eval", "--checkpoint", str(fixture), "--task", "reach", "--episodes", "1", "--max-steps", "1",
                 "--samples", "4", "--iterations", "1", "--open-loop-episodes", "0", "--landscape-goals", "0",
                 "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["summaries"][0]["planner"] == "CEM 4 samples x 1 iters x horizon 1 (top 4)"
    assert report["meta"]["world-model steps per second"] == 4.0 and report["outcomes"][0]["steps"] == 1
