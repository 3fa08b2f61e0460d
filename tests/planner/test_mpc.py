import dataclasses

import av
import numpy as np
import pytest
import torch

from vjepa_ac.planner.cem import CEMConfig
from vjepa_ac.planner.mpc import GoalSwitcher, LatentPlanner, MPCConfig, StaleFrameError, run_mpc
from vjepa_ac.planner.mppi import MPPIConfig
from vjepa_ac.planner.report import read_jsonl, save_episode
from vjepa_ac.planner.rollout import candidate_memory_bytes

from .conftest import PointRobot


def _config(**kw) -> MPCConfig:
    return MPCConfig(planner=CEMConfig(samples=24, iterations=2, topk=4), **kw)


def test_schedule_log_and_bounds(tiny_world_model, tmp_path):
    robot = PointRobot()
    goals = [robot.image_at([0.6, 0.1, 0.3, 3.1, 0, 0, 0]), robot.image_at([0.4, -0.1, 0.3, 3.1, 0, 0, 0])]
    episode = run_mpc(robot, tiny_world_model, goals, _config(goal_schedule=(2, 3)), log_path=tmp_path / "steps.jsonl")
    assert [r.goal_index for r in episode.steps] == [0, 0, 1, 1, 1]
    assert episode.outcome == "step budget of 5 used" and not episode.goal_reached
    assert len(episode.frames) == 6 and episode.frame_goals == [0, 0, 1, 1, 1, 1]
    assert robot.holds == 1 and len(robot.sent) == 5
    for action in robot.sent:
        assert np.all(np.isfinite(action)) and np.abs(action[:3]).sum() <= 0.075 + 1e-6
        assert np.all(action[3:6] == 0) and abs(action[6]) <= 0.75
    lines = read_jsonl(tmp_path / "steps.jsonl")
    assert [line["step"] for line in lines] == list(range(5))
    assert set(lines[0]) >= {"observed_energy", "planned_energy", "action", "status", "state", "plan_seconds"}
    assert len(lines[0]["iteration_energies"]) == 2

    outputs = save_episode(episode, tmp_path)
    assert outputs["energies"].stat().st_size > 0
    with av.open(str(outputs["video"])) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) == 6 and frames[0].shape == (48, 128, 3)


def test_stops_when_goal_energy_reached(tiny_world_model):
    robot = PointRobot()
    start_image = robot.image_at(robot.state)
    episode = run_mpc(robot, tiny_world_model, [start_image], _config(stop_energy=1e-6, max_steps=4))
    assert episode.goal_reached and episode.outcome == "goal energy reached"
    assert robot.sent == [] and episode.steps == []


def test_switches_goal_on_energy_threshold(tiny_world_model):
    robot = PointRobot()
    goals = [robot.image_at(robot.state), robot.image_at([0.6, 0.2, 0.3, 3.1, 0, 0, 0])]
    episode = run_mpc(robot, tiny_world_model, goals, _config(switch_energy=1e-6, max_steps=2))
    assert [r.goal_index for r in episode.steps] == [1, 1]


def _switch(config: MPCConfig, num_goals: int, energies: list[dict[int, float]],
            grippers: list[float] | None = None) -> list[int]:
    """Goal index per step when the frame of step k scores `energies[k][goal]` and the hand reads `grippers[k]`."""
    switcher = GoalSwitcher(config, num_goals)
    grippers = grippers or [0.0] * len(energies)
    return [switcher.update(step, lambda goal: scores[goal], grippers[step])[0]
            for step, scores in enumerate(energies)]


def test_goal_switching_rules():
    falling = [{0: e, 1: 1.0, 2: 1.0} for e in (1.0, 0.8, 0.6, 0.4, 0.2, 0.1)]
    # Steps only: the schedule decides, the energy does not.
    assert _switch(MPCConfig(goal_schedule=(2, 3)), 2, falling) == [0, 0, 1, 1, 1, 1]
    # Reached: below switch_energy; the schedule only caps the steps per goal.
    assert _switch(MPCConfig(switch_energy=0.45, goal_schedule=(9, 9)), 2, falling) == [0, 0, 0, 1, 1, 1]
    assert _switch(MPCConfig(switch_energy=0.05, goal_schedule=(4, 9)), 2, falling) == [0, 0, 0, 0, 1, 1]
    # Plateaued: 2 steps without beating the earlier best by 2% -> next goal; falling energies never plateau.
    stalled = [{0: e, 1: 1.0, 2: 1.0} for e in (1.0, 0.5, 0.495, 0.6, 0.3)]
    assert _switch(MPCConfig(switch_plateau=2), 3, stalled) == [0, 0, 0, 1, 1]
    assert _switch(MPCConfig(switch_plateau=2), 3, falling) == [0] * 6
    # With a floor, a plateau far from the goal (0.5) does not count; the same plateau below the floor does.
    assert _switch(MPCConfig(switch_plateau=2, plateau_floor=0.4), 3, stalled) == [0] * 5
    assert _switch(MPCConfig(switch_plateau=2, plateau_floor=0.55), 3, stalled) == [0, 0, 0, 0, 0]
    low = [{0: e, 1: 1.0, 2: 1.0} for e in (1.0, 0.3, 0.299, 0.298, 0.2)]
    assert _switch(MPCConfig(switch_plateau=2, plateau_floor=0.4), 3, low) == [0, 0, 0, 1, 1]
    # A sub-goal that is reached at once hands over in the same step, and the last goal keeps the rest.
    assert _switch(MPCConfig(switch_energy=0.5), 3, [{0: 0.1, 1: 0.2, 2: 0.9}] * 3) == [2, 2, 2]
    # Regrasp: an empty hand (fingers met) on the lift goal goes back to the straddle goal, at most twice; a hand
    # holding something (0.6) goes on.
    flat = [{0: 1.0, 1: 1.0, 2: 1.0, 3: 1.0}] * 9
    regrasp = MPCConfig(goal_schedule=(1, 2, 1, 9), regrasp=(3, 1), max_regrasps=2)
    assert _switch(regrasp, 4, flat, [0.0] * 9) == [0, 1, 1, 2, 3, 3, 3, 3, 3]
    missed = [0.0, 0, 0, 1.0, 1.0, 0, 0, 1.0, 1.0, 0, 1.0, 1.0]
    assert _switch(regrasp, 4, flat + flat[:3], missed) == [0, 1, 1, 2, 1, 1, 2, 1, 1, 2, 3, 3]
    assert _switch(regrasp, 4, flat, [0.0, 0, 0, 1.0, 0.6, 0.6, 0.6, 0.6, 0.6]) == [0, 1, 1, 2, 3, 3, 3, 3, 3]
    with pytest.raises(ValueError, match="regrasp"):
        MPCConfig(regrasp=(1, 3))
    with pytest.raises(ValueError, match="switch_plateau"):
        MPCConfig(switch_plateau=0)
    with pytest.raises(ValueError, match="plateau_drop"):
        MPCConfig(plateau_drop=1.0)
    with pytest.raises(ValueError, match="plateau_floor"):
        MPCConfig(plateau_floor=float("nan"))


def test_context_history_and_external_done(tiny_world_model, monkeypatch):
    robot = PointRobot()
    goal = robot.image_at([0.6, 0.1, 0.3, 3.1, 0, 0, 0])
    done_after = iter([False, False, True])
    calls = []
    plan = LatentPlanner.plan

    def spy(self, latents, states, actions=None, **kw):
        calls.append((latents.shape[0], np.array(states), None if actions is None else np.array(actions)))
        return plan(self, latents, states, actions, **kw)

    monkeypatch.setattr(LatentPlanner, "plan", spy)
    config = _config(context_frames=2, max_steps=6)
    episode = run_mpc(robot, tiny_world_model, [goal], config, done=lambda: next(done_after))
    assert len(episode.steps) == 3 and episode.outcome == "task reports success"
    assert [c[0] for c in calls] == [1, 2, 2]
    # The context action is the observed pose change, which here equals the action the robot executed.
    np.testing.assert_allclose(calls[1][2][0], robot.sent[0], atol=1e-9)
    np.testing.assert_allclose(calls[2][1][0], episode.steps[1].state)


def test_rejected_actions_end_the_episode(tiny_world_model):
    robot = PointRobot(reject=True)
    episode = run_mpc(robot, tiny_world_model, [robot.image_at(robot.state)], _config(max_steps=10))
    assert len(episode.steps) == 3 and "rejected 3 actions" in episode.outcome
    assert episode.steps[0].status == "rejected" and episode.steps[0].applied is None


def test_bad_inputs_fail_clearly_and_hold(tiny_world_model):
    robot = PointRobot(nan_after=1)
    goal = robot.image_at([0.6, 0.1, 0.3, 3.1, 0, 0, 0])
    with pytest.raises(ValueError, match="non-finite"):
        run_mpc(robot, tiny_world_model, [goal], _config(max_steps=3))
    assert robot.holds == 1 and len(robot.sent) == 1
    with pytest.raises(ValueError, match="no goal image"):
        run_mpc(PointRobot(), tiny_world_model, [], _config())
    with pytest.raises(ValueError, match="goal image 0 is 80x60 but the camera frames are 64x48"):
        run_mpc(PointRobot(), tiny_world_model, [np.zeros((60, 80, 3), np.uint8)], _config())
    with pytest.raises(ValueError, match="uint8"):
        LatentPlanner(tiny_world_model, [np.zeros((48, 64, 3), np.float32)], _config())
    with pytest.raises(ValueError, match="goal_schedule"):
        MPCConfig(goal_schedule=(2, 0))


def test_goal_gripper_pins_the_gripper_per_sub_goal(tiny_world_model):
    robot = PointRobot()
    goals = [robot.image_at([0.6, 0.1, 0.3, 3.1, 0, 0, 0]), robot.image_at([0.4, -0.1, 0.3, 3.1, 0, 0, 0])] * 2
    config = _config(goal_schedule=(2, 2, 1, 1), goal_gripper=(-0.5, 0.5, None))
    episode = run_mpc(robot, tiny_world_model, goals, config)
    assert [r.goal_index for r in episode.steps] == [0, 0, 1, 1, 2, 3]
    assert [a[6] for a in robot.sent[:4]] == [-0.5, -0.5, 0.5, 0.5]
    # Goals without a pin (None, or beyond the tuple) search Δgripper: the plain planner, nothing pinned.
    controller = LatentPlanner(tiny_world_model, goals, config)
    assert controller.planner_for(2) is controller.planner and controller.planner_for(3) is controller.planner
    assert controller.planner_for(1).config.space.fixed == {6: 0.5}
    assert controller.planner_for(1) is controller.planner_for(1)
    with pytest.raises(ValueError, match="goal_gripper"):
        MPCConfig(goal_gripper=(1.5,))


def test_goal_max_translation_bounds_the_steps_per_sub_goal(tiny_world_model):
    robot = PointRobot()
    goals = [robot.image_at([0.6, 0.1, 0.3, 3.1, 0, 0, 0]), robot.image_at([0.4, -0.1, 0.3, 3.1, 0, 0, 0])] * 2
    config = _config(goal_schedule=(2, 2, 1, 1), goal_gripper=(-0.5,), goal_max_translation=(None, 0.02, 0.0))
    episode = run_mpc(robot, tiny_world_model, goals, config)
    steps = [np.abs(np.asarray(a[:3])).sum() for a in robot.sent]
    assert max(steps[2:4]) <= 0.02 + 1e-6 and steps[4] == 0.0  # small steps on goal 1, in place on goal 2
    assert max(steps[:2]) > 0.02  # goal 0 keeps the search space's bound
    assert [r.goal_index for r in episode.steps] == [0, 0, 1, 1, 2, 3]
    controller = LatentPlanner(tiny_world_model, goals, config)
    both = controller.planner_for(0).config.space
    assert both.fixed == {6: -0.5} and both.max_translation == config.planner.space.max_translation
    assert controller.planner_for(1).config.space.max_translation == 0.02
    assert controller.planner_for(3) is controller.planner
    for bad in ((-0.01,), (float("nan"),)):
        with pytest.raises(ValueError, match="goal_max_translation"):
            MPCConfig(goal_max_translation=bad)


def _on_cuda(world_model):
    """`world_model` claiming to live on a GPU (the compute stays on the CPU): for the CUDA branches without one."""

    class OnCuda:
        device = torch.device("cuda")
        predictor = world_model.predictor
        num_levels = 1
        encode = staticmethod(world_model.encode)

    return OnCuda()


def test_candidates_are_chunked_to_fit_gpu_memory(tiny_world_model, monkeypatch):
    """The CUDA branch of batch sizing, with the device and its free memory stubbed (no GPU here)."""
    per_candidate = candidate_memory_bytes(tiny_world_model.predictor, 1 + 1, torch.bfloat16)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (2 * 10 * per_candidate, 10**12))
    goal = PointRobot().image_at([0.6, 0.1, 0.3, 3.1, 0, 0, 0])
    planner = LatentPlanner(_on_cuda(tiny_world_model), [goal], _config())
    assert planner.planner.config.max_batch == 10
    assert LatentPlanner(tiny_world_model, [goal], _config()).planner.config.max_batch is None


@pytest.mark.parametrize("planner", [CEMConfig(samples=16, iterations=2, topk=4), MPPIConfig(samples=16, iterations=2)])
def test_closed_loop_is_deterministic(tiny_world_model, planner):
    runs = []
    for _ in range(2):
        robot = PointRobot()
        goal = robot.image_at([0.6, 0.1, 0.3, 3.1, 0, 0, 0])
        run_mpc(robot, tiny_world_model, [goal], MPCConfig(planner=planner, max_steps=3), progress=False)
        runs.append(np.stack(robot.sent))
    np.testing.assert_array_equal(runs[0], runs[1])


class LaggingCameraRobot(PointRobot):
    """Its frames are stamped `lag` seconds before its state; after `recover_after` observations they are fresh."""

    def __init__(self, lag: float, recover_after: int | None = None) -> None:
        super().__init__()
        self.lag, self.recover_after, self.observations = lag, recover_after, 0

    def get_observation(self):
        import dataclasses

        self.observations += 1
        observation = super().get_observation()
        fresh = self.recover_after is not None and self.observations > self.recover_after
        return dataclasses.replace(observation, timestamp=100.0,
                                   image_timestamps={"left": 100.0 if fresh else 100.0 - self.lag})


def test_stale_frames_are_refused_with_camera_age_and_bound(tiny_world_model):
    robot = LaggingCameraRobot(lag=1.25)
    goal = robot.image_at(robot.state)
    config = MPCConfig(planner=CEMConfig(samples=8, iterations=1, topk=2), max_steps=2, max_frame_age_s=0.05)
    with pytest.raises(StaleFrameError, match=r"camera 'left': the newest frame is 1\.25 s old, more than the 0\.05 s"):
        run_mpc(robot, tiny_world_model, [goal], config, progress=False)
    assert robot.sent == [] and robot.holds == 1  # nothing moved; the arm is held
    assert robot.observations > 1  # a late frame was waited for before refusing
    # A frame that is only late for a moment is waited for, then planning goes on.
    late_once = LaggingCameraRobot(lag=1.25, recover_after=1)
    episode = run_mpc(late_once, tiny_world_model, [goal], config, progress=False)
    assert len(episode.steps) == 2
    # No bound: the old frame is used.
    unbounded = dataclasses.replace(config, max_frame_age_s=None)
    assert len(run_mpc(LaggingCameraRobot(lag=5.0), tiny_world_model, [goal], unbounded, progress=False).steps) == 2
    with pytest.raises(ValueError, match="max_frame_age_s must be > 0"):
        MPCConfig(max_frame_age_s=0.0)


def test_warm_start_seeds_each_plan_with_the_shifted_previous_one(tiny_world_model, monkeypatch):
    from vjepa_ac.planner import cem

    robot = PointRobot()
    goal = robot.image_at([0.6, 0.1, 0.3, 3.1, 0, 0, 0])
    seen = []
    plan = cem.CEMPlanner.plan

    def spy(self, rollout, objective, *, seed=None, initial_mean=None):
        seen.append(initial_mean)
        return plan(self, rollout, objective, seed=seed, initial_mean=initial_mean)

    monkeypatch.setattr(cem.CEMPlanner, "plan", spy)
    config = MPCConfig(planner=CEMConfig(samples=24, iterations=2, topk=4, horizon=2, warm_start=True), max_steps=3)
    episode = run_mpc(robot, tiny_world_model, [goal], config)
    assert seen[0] is None and all(m is not None and m.shape == (2, 4) for m in seen[1:])
    assert len(episode.steps) == 3 and all(r.replanned for r in episode.steps)


def test_surprise_gating_sends_the_plans_next_step_while_the_prediction_holds(tiny_world_model):
    robot = PointRobot()
    goal = robot.image_at([0.6, 0.1, 0.3, 3.1, 0, 0, 0])
    planner = CEMConfig(samples=24, iterations=2, topk=4, horizon=3)
    # A gate no observation can pass: re-plans every step, but records how surprised it was.
    strict = run_mpc(PointRobot(), tiny_world_model, [goal], MPCConfig(planner=planner, max_steps=3, surprise_gate=1e-9))
    assert all(r.replanned for r in strict.steps) and strict.steps[1].surprise > 0
    # A gate every observation passes: one plan, then its remaining two steps, then a new plan.
    episode = run_mpc(robot, tiny_world_model, [goal], MPCConfig(planner=planner, max_steps=5, surprise_gate=1e6))
    assert [r.replanned for r in episode.steps] == [True, False, False, True, False]
    assert episode.steps[1].plan_seconds == 0.0
    first_plan = episode.steps[0]
    assert robot.sent[0].tolist() == first_plan.action
    with pytest.raises(ValueError, match="surprise_gate"):
        MPCConfig(surprise_gate=-1.0)


def test_threads_are_chosen_by_measurement_and_reported(tiny_world_model, monkeypatch):
    threads = torch.get_num_threads()
    monkeypatch.setattr("vjepa_ac.planner.mpc._THREAD_CHOICES", {})
    try:
        torch.set_num_threads(2)
        robot = PointRobot()
        episode = run_mpc(robot, tiny_world_model, [robot.image_at(robot.state)], _config(max_steps=1))
        assert "chosen by measurement" in episode.threads and "1:" in episode.threads and "2:" in episode.threads
        episode = run_mpc(robot, tiny_world_model, [robot.image_at(robot.state)], _config(max_steps=1, threads=1))
        assert episode.threads.startswith("1 torch thread") and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)


def test_on_a_gpu_threads_are_not_probed_and_bf16_autocast_is_the_default(tiny_world_model, monkeypatch):
    """The CUDA path with the device stubbed (no GPU here): no CPU thread probe, bf16 autocast under "auto"."""
    from vjepa_ac.planner import rollout as rollout_module

    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (10**12, 10**12))
    probed = []
    monkeypatch.setattr("vjepa_ac.planner.mpc.choose_threads", lambda *a, **k: probed.append(1))
    contexts = []
    autocast = rollout_module.autocast

    def spy(device, precision):
        contexts.append(autocast(torch.device("cuda"), precision))
        return autocast(device, precision)

    monkeypatch.setattr(rollout_module, "autocast", spy)
    goal = PointRobot().image_at([0.6, 0.1, 0.3, 3.1, 0, 0, 0])
    planner = LatentPlanner(_on_cuda(tiny_world_model), [goal], _config())
    latent = planner.encode([goal])
    planner.plan(latent, np.array([0.6, 0.1, 0.3, 3.1, 0, 0, 0.0]))
    assert probed == [] and planner.thread_choice.threads == torch.get_num_threads()
    assert contexts and all(isinstance(c, torch.autocast) and c.fast_dtype == torch.bfloat16 for c in contexts)


def test_a_multi_view_camera_gives_its_views_side_by_side_each_checked():
    from types import SimpleNamespace

    from vjepa_ac.planner.mpc import camera_frame

    left, wrist = np.zeros((4, 6, 3), np.uint8), np.full((4, 6, 3), 9, np.uint8)
    observation = SimpleNamespace(images={"left": left, "wrist": wrist}, timestamp=10.0,
                                  image_timestamps={"left": 10.0, "wrist": 8.0})
    joined = camera_frame(observation, "left+wrist")
    assert joined.shape == (4, 12, 3)
    np.testing.assert_array_equal(joined[:, :6], left)
    np.testing.assert_array_equal(joined[:, 6:], wrist)
    with pytest.raises(StaleFrameError, match="camera 'wrist': the newest frame is 2.00 s old"):
        camera_frame(observation, "left+wrist", max_age_s=0.5)
    with pytest.raises(ValueError, match="camera 'right' not in the observation"):
        camera_frame(observation, "left+right")
    observation.images["wrist"] = np.zeros((4, 8, 3), np.uint8)
    with pytest.raises(ValueError, match="frames of one size"):
        camera_frame(observation, "left+wrist")


def test_an_injected_rollout_factory_imagines_the_candidates(tiny_world_model):
    """With `rollout_factory` the plan scores candidates on what the factory's rollout imagines (here: the goal's own
    latent, displaced by how far the candidate's Δx is from +5 cm), built from the context the loop observed."""
    robot = PointRobot()
    goal_image = robot.image_at([0.4, -0.1, 0.3, 3.1, 0, 0, 0])
    goal_latent = tiny_world_model.encode(goal_image[None, None])[0, 0]
    seen = []

    def factory(latents, states, actions):
        seen.append((latents.shape, states.clone(), actions))

        def rollout(candidates):
            miss = (candidates[:, :, 0].sum(dim=1) - 0.05).abs()
            return goal_latent.expand(len(candidates), candidates.shape[1], *goal_latent.shape) + miss[:, None, None,
                                                                                                          None]
        return rollout

    config = MPCConfig(planner=CEMConfig(samples=64, iterations=3, topk=8, horizon=1), max_steps=2)
    episode = run_mpc(robot, tiny_world_model, [goal_image], config, rollout_factory=factory)
    assert len(seen) == 2 and seen[0][0] == (1, *goal_latent.shape) and seen[0][2] is None
    np.testing.assert_allclose(seen[0][1][0].numpy(), [0.5, 0.0, 0.3, 3.1, 0, 0, 0])
    for action in robot.sent:  # the model's own imagination would aim at the goal image's (0.4, -0.1) instead
        assert abs(action[0] - 0.05) < 0.015
    assert [r.step for r in episode.steps] == [0, 1]


def test_goal_reduce_sets_the_energy_reduction_per_sub_goal(tiny_world_model):
    """A rollout that imagines every step one unit off the goal scores 1 where the last step counts and 3 (horizon 3)
    where every step does; goals beyond the tuple, or None, use `reduce`."""
    robot = PointRobot()
    goals = [robot.image_at([0.6, 0.1, 0.3, 3.1, 0, 0, 0])] * 4
    goal_latent = tiny_world_model.encode(goals[0][None, None])[0, 0]

    def factory(latents, states, actions):
        return lambda candidates: (goal_latent + 1.0).expand(len(candidates), candidates.shape[1], *goal_latent.shape)

    config = MPCConfig(planner=CEMConfig(samples=8, iterations=1, topk=2, horizon=3), goal_reduce=("last", "sum", None))
    controller = LatentPlanner(tiny_world_model, goals, config, rollout_factory=factory)
    latent = goal_latent[None]
    state = np.array([[0.5, 0.0, 0.3, 3.1, 0, 0, 0]])
    energies = [controller.plan(latent, state, goal_index=k, seed=0).energy for k in range(4)]
    assert energies == pytest.approx([1.0, 3.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="goal_reduce"):
        MPCConfig(goal_reduce=("last", "mean"))
