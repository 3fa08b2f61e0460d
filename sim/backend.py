"""The bridge's MuJoCo backend (a `robot.backends.Backend`): the simulator's Panda (`sim.SimRobot`) run in real time
behind the bridge, so the whole link (serialization, watchdog, safety, interpolation, timing, camera frames) runs end
to end on one machine.

Physics advances in its own thread in step with the wall clock; joint set-points drive the scene's position servos,
which play the part of the arm's joint impedance controller. The scene is the simulator's tabletop with its
"left", "right" and "wrist" cameras, or one of its tasks (`sim.make_env`).
"""

from __future__ import annotations

import threading
import time

import mujoco
import numpy as np

from vjepa_ac.robot.backends.base import ArmState, Backend
from vjepa_ac.robot.safety import quat_xyzw_to_matrix

_MAX_STEPS_PER_WAKE = 200
"""Physics steps per wake-up at most: after a stall the simulation slows down instead of freezing the bridge."""


class MujocoBackend(Backend):
    name = "mujoco"
    supports_cartesian = True

    def __init__(
        self,
        *,
        task: str | None = None,
        seed: int = 0,
        robot_model: str = "panda",
        initial_q: list[float] | None = None,
        cameras: tuple[str, ...] | None = None,
        image_size: tuple[int, int] = (180, 320),
        realtime_factor: float = 1.0,
    ) -> None:
        """`task`: a simulator task whose scene and object placement are used (`sim.make_env(task, seed=seed)`);
        `robot_model`: the simulator's robot option ("panda", "menagerie:fr3" or an MJCF path);
        `cameras`: roles to stream (default: all of the scene's); `image_size`: (height, width) of streamed frames."""
        from vjepa_ac.sim import SceneConfig, SimConfig, SimRobot, make_env

        config = SimConfig(scene=SceneConfig(robot=robot_model), image_size=tuple(image_size))
        if task is not None:
            self.sim, _ = make_env(task, seed=seed, scene=config.scene, image_size=config.image_size)
        else:
            self.sim = SimRobot(config)
            self.sim.connect()
        if initial_q is not None:
            self.sim.reset(q=np.asarray(initial_q, dtype=np.float64))
        self.model, self.data = self.sim.model, self.sim.data
        self.kinematics = self.sim.kinematics
        self._arm_actuators = self.sim.info.arm_actuators
        self._gripper_actuator = self.sim.info.gripper_actuator
        self.cameras = tuple(cameras) if cameras is not None else tuple(self.sim.camera_roles)
        self.realtime_factor = realtime_factor
        self._lock = threading.Lock()
        self._running = threading.Event()
        self._thread: threading.Thread | None = None
        self._mode = "move"
        self._errors: tuple[str, ...] = ()

    def start(self) -> None:
        if self._thread is None:
            self._running.set()
            self._thread = threading.Thread(target=self._physics_loop, name="mujoco-physics", daemon=True)
            self._thread.start()

    def _physics_loop(self) -> None:
        wall0, sim0 = time.monotonic(), self.data.time
        while self._running.is_set():
            target = sim0 + (time.monotonic() - wall0) * self.realtime_factor
            with self._lock:
                for _ in range(_MAX_STEPS_PER_WAKE):
                    if self.data.time >= target:
                        break
                    mujoco.mj_step(self.model, self.data)
                else:
                    wall0, sim0 = time.monotonic(), self.data.time
            time.sleep(0.001)

    def read_state(self) -> ArmState:
        with self._lock:
            q = self.sim.joint_positions
            dq = self.sim.joint_velocities
            tau = self.data.actuator_force[self._arm_actuators].copy()
            gripper = self.sim.gripper_position
            t = float(self.data.time)
        return ArmState(q=q, dq=dq, gripper=gripper, robot_t_s=t, tau_J=tau, robot_mode=self._mode, errors=self._errors)

    def command_joints(self, q: np.ndarray, dq: np.ndarray) -> None:
        if self._mode != "move":
            return  # a reflex brakes the arm; set-points are ignored until recovery, as on the real robot
        with self._lock:
            self.data.ctrl[self._arm_actuators] = q

    def command_pose(self, pos: np.ndarray, quat_xyzw: np.ndarray) -> None:
        """Cartesian mode: the servos track the IK solution of the equilibrium pose (as an impedance controller's
        equilibrium pulls the arm there), seeded with the current servo targets for continuity."""
        with self._lock:
            q_seed = self.data.ctrl[self._arm_actuators].copy()
        result = self.kinematics.ik(np.asarray(pos, dtype=np.float64), quat_xyzw_to_matrix(quat_xyzw), q_seed,
                                    limits=self.sim.info.limits)
        self.command_joints(result.q, np.zeros(7))

    def set_gripper(self, position: float) -> None:
        """Closure 0..1 mapped linearly onto the gripper actuator's control range (open end .. closed end)."""
        if self._gripper_actuator is None:
            return
        low, high = self.model.actuator_ctrlrange[self._gripper_actuator]
        with self._lock:
            self.data.ctrl[self._gripper_actuator] = high - (high - low) * float(np.clip(position, 0.0, 1.0))

    def stop(self, q_hold: np.ndarray) -> None:
        with self._lock:
            self.data.ctrl[self._arm_actuators] = q_hold

    def trigger_reflex(self, error: str = "cartesian_reflex") -> None:
        """Simulate a robot reflex (e.g. a collision): the arm brakes where it is and reports FAULT until recovered."""
        with self._lock:
            self.data.ctrl[self._arm_actuators] = self.sim.joint_positions
        self._mode, self._errors = "reflex", (error,)

    def recover(self) -> None:
        self._mode, self._errors = "move", ()

    def read_images(self) -> dict[str, tuple[np.ndarray, float]]:
        if not self.cameras:
            return {}
        with self._lock:  # rendering reads the simulation state; physics waits and then catches up
            t_capture = time.monotonic()
            images = self.sim.render(self.cameras)
        return {role: (image, t_capture) for role, image in images.items()}

    def close_cameras(self) -> None:
        with self._lock:
            self.sim.close()  # frees the renderers, which must happen on the thread that created them

    def close(self) -> None:
        self._running.clear()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
            self._thread = None
        self.sim.close()
