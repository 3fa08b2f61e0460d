"""3D RoPE: the V-JEPA 2 tiling quirk, the 2.1 pairwise rotation, the axis split and position grids."""

import math

import pytest
import torch

from vjepa_ac.worldmodel.rope import apply_rope, grid_positions, rope_axis_dim, rope_tables


@pytest.mark.parametrize("head_dim, axis_dim", [(64, 20), (80, 26), (16, 4), (88, 28)])
def test_axis_split_matches_reference_formula(head_dim, axis_dim):
    assert rope_axis_dim(head_dim) == axis_dim


def _angles_per_dim(position: list[float], head_dim: int, *, interleaved: bool) -> torch.Tensor:
    """The rotation angle each dim k uses, read back from rotating unit vectors: out(e_k)[k] = cos theta_k and
    out(e_partner)[k] = -/+ sin theta_k for the even/odd member of a pair."""
    cos, sin = rope_tables(torch.tensor([position]), head_dim, interleaved=interleaved)
    out = apply_rope(torch.eye(head_dim).view(head_dim, 1, 1, head_dim), cos, sin).view(head_dim, head_dim)
    k = torch.arange(head_dim)
    partner = k ^ 1
    sign = torch.where(k % 2 == 0, -1.0, 1.0)
    return torch.atan2(sign * out[partner, k], out[k, k])


def _pair_frequencies(interleaved: bool, head_dim: int = 64) -> torch.Tensor:
    """Angle per rotated dim for a token at t=1, h=0, w=0: equals the frequency used by that dim (time chunk)."""
    return _angles_per_dim([1.0, 0.0, 0.0], head_dim, interleaved=interleaved)[: rope_axis_dim(head_dim)]


def test_vjepa2_tiled_tables_give_pair_members_different_frequencies():
    angles = _pair_frequencies(interleaved=False)
    half = angles.numel() // 2
    expected = torch.tensor([10000 ** (-(k % half) / half) for k in range(angles.numel())])
    torch.testing.assert_close(angles, expected)
    # Pair (0, 1) uses omega_0 and omega_1: different frequencies, so not a proper rotation.
    assert not torch.isclose(angles[0], angles[1])


def test_vjepa2_1_interleaved_tables_give_pair_members_the_same_frequency():
    angles = _pair_frequencies(interleaved=True)
    torch.testing.assert_close(angles[0::2], angles[1::2])
    half = angles.numel() // 2
    torch.testing.assert_close(angles[0::2], torch.tensor([10000 ** (-j / half) for j in range(half)]))


def test_interleaved_rope_is_a_rotation_and_tiled_is_not():
    torch.manual_seed(0)
    x = torch.randn(1, 2, 5, 64)
    positions = torch.tensor([[3.0, 2.0, 7.0]]).expand(5, 3)
    for interleaved, preserves in ((True, True), (False, False)):
        cos, sin = rope_tables(positions, 64, interleaved=interleaved)
        out = apply_rope(x, cos, sin)
        pair_norms_in = x[..., :60].unflatten(-1, (-1, 2)).norm(dim=-1)
        pair_norms_out = out[..., :60].unflatten(-1, (-1, 2)).norm(dim=-1)
        assert torch.allclose(pair_norms_in, pair_norms_out, atol=1e-5) is preserves


def test_explicit_pair_formula_and_unrotated_tail():
    x = torch.arange(16, dtype=torch.float32).view(1, 1, 1, 16) + 1
    positions = torch.tensor([[2.0, 1.0, 3.0]])
    cos, sin = rope_tables(positions, 16, interleaved=False)
    out = apply_rope(x, cos, sin)[0, 0, 0]
    theta = _angles_per_dim([2.0, 1.0, 3.0], 16, interleaved=False)
    v = x[0, 0, 0]
    for i in range(6):
        a, b = 2 * i, 2 * i + 1
        assert math.isclose(out[a], v[a] * math.cos(theta[a]) - v[b] * math.sin(theta[a]), rel_tol=1e-5)
        assert math.isclose(out[b], v[b] * math.cos(theta[b]) + v[a] * math.sin(theta[b]), rel_tol=1e-5)
    torch.testing.assert_close(out[12:], v[12:])


def test_position_zero_is_identity_so_cond_tokens_only_rotate_time():
    torch.manual_seed(1)
    x = torch.randn(1, 1, 1, 64)
    cos, sin = rope_tables(torch.tensor([[4.0, 0.0, 0.0]]), 64, interleaved=False)
    out = apply_rope(x, cos, sin)
    torch.testing.assert_close(out[..., 20:], x[..., 20:])
    assert not torch.allclose(out[..., :20], x[..., :20])


def test_grid_positions_order_and_scale():
    pos = grid_positions(2, 3, 4, spatial_scale=(0.5, 2.0))
    assert pos.shape == (24, 3)
    # t-major, then row, then column.
    torch.testing.assert_close(pos[5], torch.tensor([0.0, 0.5, 2.0]))
    torch.testing.assert_close(pos[12 + 11], torch.tensor([1.0, 1.0, 6.0]))


def test_bad_positions_shape():
    with pytest.raises(ValueError, match=r"\[N, 3\]"):
        rope_tables(torch.zeros(4, 2), 64, interleaved=False)
