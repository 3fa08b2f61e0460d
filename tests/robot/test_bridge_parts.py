"""The bridge's parts on their own: the set-point tracker with a recording backend, and the camera stream on a real
ZMQ PUB/SUB pair (no bridge loop, no watchdog)."""

import threading

import cv2
import numpy as np
import zmq

from vjepa_ac.robot.backends.base import ArmState, Backend
from vjepa_ac.robot.bridge_camera import CameraStreamer
from vjepa_ac.robot.bridge_tracking import JointTracker
from vjepa_ac.robot.kinematics import DROID_HOME_Q, ArmKinematics
from vjepa_ac.robot.protocol import decode_frame
from vjepa_ac.robot.safety import SafetyConfig, SafetyFilter


class RecordingBackend(Backend):
    name = "recording"

    def __init__(self, image: np.ndarray | None = None) -> None:
        self.joint_setpoints: list[np.ndarray] = []
        self.image = image
        self.cameras_closed = threading.Event()

    def read_state(self) -> ArmState:
        return ArmState(q=DROID_HOME_Q.copy(), dq=np.zeros(7), gripper=0.0, robot_t_s=0.0)

    def command_joints(self, q: np.ndarray, dq: np.ndarray) -> None:
        self.joint_setpoints.append(np.array(q))

    def set_gripper(self, position: float) -> None:
        pass

    def stop(self, q_hold: np.ndarray) -> None:
        pass

    def read_images(self):
        return {} if self.image is None else {"left": (self.image, 12.5)}

    def close_cameras(self) -> None:
        self.cameras_closed.set()


def test_joint_tracker_streams_checked_setpoints_toward_a_target():
    backend = RecordingBackend()
    tracker = JointTracker(SafetyFilter(ArmKinematics(), SafetyConfig()), backend)
    tracker.start(backend.read_state(), now=0.0)
    assert tracker.emit(0.0) and np.allclose(backend.joint_setpoints[-1], DROID_HOME_Q)
    target_q = DROID_HOME_Q + np.array([0.05, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0])
    duration = tracker.retarget(tracker.safety.resolve_joint_target(target_q), now=0.0)
    assert duration > 0 and np.allclose(tracker.target_q, target_q)
    for now in np.linspace(0.0, duration + 0.1, 50):
        assert tracker.emit(float(now))
    assert np.allclose(backend.joint_setpoints[-1], target_q, atol=1e-6)
    assert tracker.setpoint_q is not None and np.allclose(tracker.setpoint_q, target_q, atol=1e-6)
    # Every set-point moved monotonically toward the target along joint 1, never past it.
    first_joint = [q[0] for q in backend.joint_setpoints]
    assert all(b >= a - 1e-12 for a, b in zip(first_joint, first_joint[1:])) and max(first_joint) <= target_q[0] + 1e-9


def test_camera_streamer_publishes_backend_frames_as_jpeg_and_closes_the_cameras():
    image = np.zeros((48, 64, 3), np.uint8)
    image[:, :32] = (255, 0, 0)  # red left half, RGB
    backend = RecordingBackend(image)
    stop = threading.Event()
    context = zmq.Context()
    pub, sub = context.socket(zmq.PUB), context.socket(zmq.SUB)
    pub.bind("inproc://camera-test")
    sub.connect("inproc://camera-test")
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    streamer = CameraStreamer(backend, None, camera_hz=50.0, jpeg_quality=95, stop=stop)
    try:
        streamer.start(pub)
        assert sub.poll(10_000), "no camera frame published"
        role, seq, t_ns, jpeg = decode_frame(sub.recv())
        assert role == "left" and seq >= 0 and t_ns == 12_500_000_000
        decoded = cv2.cvtColor(cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        assert decoded.shape == image.shape
        assert decoded[:, :28, 0].mean() > 200 and decoded[:, 36:, 0].mean() < 50
    finally:
        stop.set()
        streamer.thread.join(timeout=10)
        pub.close(linger=0)
        sub.close(linger=0)
        context.term()
    assert backend.cameras_closed.is_set()
