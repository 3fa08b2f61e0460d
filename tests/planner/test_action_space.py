import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from vjepa_ac.planner.action_space import SearchSpace, project_l1_ball


def test_l1_projection_matches_bruteforce_minimum():
    gen = torch.Generator().manual_seed(0)
    v = torch.randn(64, 3, generator=gen, dtype=torch.float64) * 0.2
    p = project_l1_ball(v, 0.075)
    assert torch.all(p.abs().sum(-1) <= 0.075 + 1e-12)
    # Projection optimality: no feasible random point is closer to v than p.
    candidates = project_l1_ball(torch.randn(4000, 3, generator=gen, dtype=torch.float64), 0.075)
    for i in range(8):
        best = (candidates - v[i]).norm(dim=-1).min()
        assert (p[i] - v[i]).norm() <= best + 1e-12


def test_l1_projection_keeps_inside_points():
    v = torch.tensor([[0.01, -0.02, 0.03], [0.0, 0.0, 0.0]])
    assert torch.equal(project_l1_ball(v, 0.075), v)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.floats(-1e3, 1e3, allow_nan=False), min_size=4, max_size=4),
    st.sampled_from(["l1_ball", "box"]),
)
def test_constrain_always_in_bounds(values, constraint):
    space = SearchSpace(translation_constraint=constraint)
    out = space.constrain(torch.tensor([values], dtype=torch.float32))
    xyz, grip = out[0, :3], out[0, 3]
    if constraint == "box":
        assert torch.all(xyz.abs() <= space.max_translation + 1e-7)
    else:
        assert xyz.abs().sum() <= space.max_translation + 1e-6
    assert abs(float(grip)) <= space.gripper_limit


def test_to_actions_layout_and_close_gripper():
    space = SearchSpace(close_gripper=1)
    free = torch.tensor([[[0.01, 0.02, 0.03, 0.1], [0.01, 0.02, 0.03, -0.5]]])
    actions = space.to_actions(free)
    assert actions.shape == (1, 2, 7)
    assert torch.all(actions[..., 3:6] == 0)
    assert actions[0, 0, 6] == pytest.approx(0.1)
    assert actions[0, 1, 6] == 1.0


def test_yaw_search_adds_a_bounded_fifth_dimension():
    space = SearchSpace(max_yaw=0.1, fixed={6: 0.5})
    assert space.dims == (0, 1, 2, 6, 5) and SearchSpace().dims == (0, 1, 2, 6)
    mean, std = space.initial_distribution(2)
    assert mean.shape == std.shape == (2, 5)
    assert torch.all(mean[:, 3] == 0.5) and torch.all(std[:, 4] == 0.1)
    free = space.constrain(torch.tensor([[0.01, 0.0, 0.0, 0.0, -0.7], [0.0, 0.0, 0.0, 0.0, 0.05]]))
    assert free[0, 4] == pytest.approx(-0.1) and free[1, 4] == pytest.approx(0.05)
    actions = space.to_actions(free)
    assert torch.all(actions[:, 5] == free[:, 4]) and torch.all(actions[:, 3:5] == 0)
    assert torch.all(actions[:, 6] == 0.5)
    torch.testing.assert_close(space.free_dims(actions), free)
    draws = space.sample(mean, std, 500, torch.Generator().manual_seed(0))
    assert draws[..., 4].abs().max() <= 0.1 + 1e-7 and draws[..., 4].std() > 0.03


def test_yaw_can_be_pinned_only_when_searched():
    assert SearchSpace(max_yaw=0.1, fixed={5: 0.05}).initial_distribution(1)[0][0, 4] == pytest.approx(0.05)
    with pytest.raises(ValueError, match="not searched"):
        SearchSpace(fixed={5: 0.05})
    for bad in (-0.1, float("nan"), 1.0):
        with pytest.raises(ValueError, match="max_yaw"):
            SearchSpace(max_yaw=bad)


def test_finalize_rounds_small_gripper_and_rejects_nan():
    space = SearchSpace()
    out = space.finalize(torch.tensor([[0.01, 0.0, 0.0, 0.2], [0.0, 0.0, 0.0, 0.3]]))
    assert out[0, 6] == 0.0 and out[1, 6] == pytest.approx(0.3)
    with pytest.raises(FloatingPointError, match="not finite"):
        space.finalize(torch.tensor([[float("nan"), 0.0, 0.0, 0.0]]))


def test_bad_search_space_settings():
    with pytest.raises(ValueError, match="not searched"):
        SearchSpace(fixed={3: 0.0})
    with pytest.raises(ValueError, match="translation_constraint"):
        SearchSpace(translation_constraint="sphere")
    with pytest.raises(ValueError, match="gripper_limit"):
        SearchSpace(gripper_limit=float("nan"))
