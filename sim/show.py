"""Contact sheets: many scenes side by side, so a person can judge the variety of domain randomisation at a glance."""

from __future__ import annotations

import math
from collections.abc import Iterable

import cv2
import numpy as np

from vjepa_ac.sim.robot import SimRobot
from vjepa_ac.sim.scene import cube_color_name, cube_shape_name
from vjepa_ac.sim.tasks import make_env


def contact_sheet(task: str, seeds: Iterable[int], *, camera: str = "left", columns: int | None = None,
                  **options) -> np.ndarray:
    """One RGB image [H, W, 3] uint8: the `camera` view of `task` reset with each seed, in a grid (`columns`
    defaults to about the square root of the count), each tile labelled with its seed and object.

    `options` are `SimConfig` fields, as for `sim.tasks.make_env` (e.g. `randomize_appearance=True`)."""
    seeds = list(seeds)
    if not seeds:
        raise ValueError("a contact sheet needs at least one seed")
    robot: SimRobot | None = None
    tiles = []
    try:
        for seed in seeds:
            if robot is None:
                robot, _ = make_env(task, seed=seed, **options)
            else:
                robot, _ = make_env(task, seed=seed, robot=robot)
            image = np.ascontiguousarray(robot.render((camera,))[camera])
            label = f"{seed}: {cube_color_name(robot.model)} {cube_shape_name(robot.model)}"
            scale = image.shape[0] / 400
            cv2.putText(image, label, (6, int(22 * scale) + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.6 * scale, (0, 0, 0),
                        max(1, round(3 * scale)), cv2.LINE_AA)
            cv2.putText(image, label, (6, int(22 * scale) + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.6 * scale,
                        (255, 255, 255), max(1, round(1.2 * scale)), cv2.LINE_AA)
            tiles.append(image)
    finally:
        if robot is not None:
            robot.close()
    columns = columns or math.ceil(math.sqrt(len(tiles)))
    blank = np.zeros_like(tiles[0])
    tiles += [blank] * (-len(tiles) % columns)
    rows = [np.concatenate(tiles[i:i + columns], axis=1) for i in range(0, len(tiles), columns)]
    return np.concatenate(rows, axis=0)
