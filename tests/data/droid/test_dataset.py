"""DroidClipDataset: item contract, determinism across workers and ranks, and bad episodes skipped."""

import shutil

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, DistributedSampler

from vjepa_ac.data.droid import DroidClipDataset, EpisodeError, iter_episode_references, open_episode
from vjepa_ac.data.droid.poses import states_to_actions, states_to_camera_frame


@pytest.fixture(scope="module")
def references(droid_root):
    return list(iter_episode_references(droid_root))


def test_item_contract(references):
    dataset = DroidClipDataset(references, seed=0)
    assert len(dataset) == 3
    item = dataset[0]
    assert item["frames"].shape == (8, 48, 64, 3) and item["frames"].dtype == torch.uint8
    assert item["states"].shape == (8, 7) and item["states"].dtype == torch.float32
    assert item["actions"].shape == (7, 7) and item["extrinsics"].shape == (8, 6)
    assert item["frame_indices"].dtype == torch.int64
    np.testing.assert_array_equal(np.diff(item["frame_indices"].numpy()), 4)  # ceil(15 fps / 4 fps)
    episode = open_episode(references[0])
    states = episode.states()[item["frame_indices"].numpy()]
    np.testing.assert_allclose(item["states"].numpy(), states, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(item["actions"].numpy(), states_to_actions(states), atol=1e-6)
    assert item["episode_id"] == episode.episode_id
    # The frames are the ones at those steps (grey level = 7 * step, within codec loss).
    levels = item["frames"][:, 24, 32, 0].numpy().astype(int)
    np.testing.assert_allclose(levels, (item["frame_indices"].numpy() * 7) % 250, atol=3)


def test_same_seed_same_clips_with_workers(references):
    dataset = DroidClipDataset(references, seed=5, clips_per_episode=2)
    serial = [dataset[i]["frame_indices"] for i in range(len(dataset))]
    loader = DataLoader(dataset, batch_size=2, num_workers=2)
    parallel = torch.cat([batch["frame_indices"] for batch in loader])
    torch.testing.assert_close(torch.stack(serial), parallel)
    other_seed = DroidClipDataset(references, seed=6, clips_per_episode=2)
    assert any(not torch.equal(other_seed[i]["frame_indices"], serial[i]) for i in range(len(dataset)))
    dataset.set_epoch(1)
    assert any(not torch.equal(dataset[i]["frame_indices"], serial[i]) for i in range(len(dataset)))


def test_distributed_sampler_partitions(references):
    dataset = DroidClipDataset(references, seed=0, clips_per_episode=4)
    seen = []
    for rank in range(2):
        sampler = DistributedSampler(dataset, num_replicas=2, rank=rank, shuffle=True, seed=0)
        seen += [dataset[i]["episode_id"] for i in sampler]
    assert len(seen) == len(dataset)


def test_timestamp_mode_camera_choice_and_camera_frame(references):
    dataset = DroidClipDataset(references, seed=0, sampling="timestamp", camera=("left", "wrist"), camera_frame=True)
    item = dataset[1]
    steps = np.diff(item["frame_indices"].numpy())
    assert set(steps.tolist()) <= {3, 4}  # 250 ms at 66.7 ms per step
    episode = open_episode(references[1])
    role = "left" if np.allclose(item["extrinsics"][0, 1].item(), 0.5) else "wrist"
    idx = item["frame_indices"].numpy()
    expected = states_to_camera_frame(episode.states()[idx], episode.extrinsics(role)[idx])
    np.testing.assert_allclose(item["states"].numpy(), expected, atol=1e-5)


def test_bad_episode_is_skipped(tmp_path, references, caplog):
    broken = tmp_path / "broken"
    shutil.copytree(references[0], broken)
    (broken / "trajectory.h5").write_bytes(b"not hdf5")
    dataset = DroidClipDataset([str(broken), *references], seed=0)
    item = dataset[0]
    assert item["episode_id"] != "broken" and item["frames"].shape[0] == 8
    assert "skipping episode" in caplog.text
    with pytest.raises(EpisodeError, match="in a row failed"):
        DroidClipDataset([str(broken)], seed=0, max_retries=2)[0]


def test_config_errors(references):
    with pytest.raises(ValueError, match="frames_per_clip"):
        DroidClipDataset(references, frames_per_clip=1)
    with pytest.raises(ValueError, match="sampling"):
        DroidClipDataset(references, sampling="uniform")
    with pytest.raises(IndexError):
        DroidClipDataset(references)[3]
