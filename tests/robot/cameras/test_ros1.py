"""ROS 1 image topics as camera sources.

The decoding tests need no ROS. The end-to-end test runs a real rosmaster, image publishers in Debian's Python
(`sensor_msgs/Image` and `sensor_msgs/CompressedImage`), the franka_ros stand-in, and `vjepa-ac bridge run --backend
ros1` with cameras declared in its YAML; a workstation client reads the frames from the bridge's camera socket.
"""

from __future__ import annotations

import sys
import time

import cv2
import numpy as np
import pytest

from vjepa_ac.planner.goals import load_goal_schedule
from vjepa_ac.planner.mpc import StaleFrameError, camera_frame
from vjepa_ac.robot.cameras.ros1 import compressed_message_to_rgb, image_message_to_rgb
from vjepa_ac.robot.client import BridgeClient, ClientConfig
from vjepa_ac.cli import main

DEBIAN_PYTHON = "/usr/bin/python3"
PUBLISHER = r"""
import sys
import rospy
from sensor_msgs.msg import CompressedImage, Image

topic, kind, path, width, height, encoding, rate, stamp_age = sys.argv[1:9]
data = open(path, "rb").read()
rospy.init_node("test_image_publisher", anonymous=True, disable_signals=True)
pub = rospy.Publisher(topic, CompressedImage if kind == "compressed" else Image, queue_size=1)
print("publisher running", flush=True)
rate = rospy.Rate(float(rate))
while not rospy.is_shutdown():
    if kind == "compressed":
        msg = CompressedImage(format="jpeg", data=data)
    else:
        msg = Image(height=int(height), width=int(width), encoding=encoding, step=len(data) // int(height), data=data)
    msg.header.stamp = rospy.Time.now() - rospy.Duration.from_sec(float(stamp_age))
    pub.publish(msg)
    rate.sleep()
"""


def _pattern(height: int = 48, width: int = 64) -> np.ndarray:
    """RGB test image: red left half, blue right half, a green square at the top left."""
    image = np.zeros((height, width, 3), np.uint8)
    image[:, : width // 2] = (220, 30, 20)
    image[:, width // 2 :] = (20, 40, 230)
    image[4:12, 4:12] = (10, 240, 10)
    return image


def test_raw_encodings_decode_to_rgb():
    rgb = _pattern()
    h, w = rgb.shape[:2]
    np.testing.assert_array_equal(image_message_to_rgb("rgb8", h, w, w * 3, rgb.tobytes()), rgb)
    np.testing.assert_array_equal(image_message_to_rgb("bgr8", h, w, w * 3, rgb[..., ::-1].tobytes()), rgb)
    bgra = np.concatenate([rgb[..., ::-1], np.full((h, w, 1), 255, np.uint8)], axis=2)
    np.testing.assert_array_equal(image_message_to_rgb("bgra8", h, w, w * 4, bgra.tobytes()), rgb)
    # Rows padded to a 256-byte step, as some drivers publish them.
    padded = np.zeros((h, 256), np.uint8)
    padded[:, : w * 3] = rgb.reshape(h, -1)
    np.testing.assert_array_equal(image_message_to_rgb("rgb8", h, w, 256, padded.tobytes()), rgb)
    mono = image_message_to_rgb("mono8", h, w, w, rgb[..., 0].tobytes())
    assert mono.shape == (h, w, 3) and np.array_equal(mono[..., 2], rgb[..., 0])


@pytest.mark.parametrize(
    ("encoding", "height", "width", "step", "size", "message"),
    [
        ("bayer_rggb8", 4, 4, 4, 16, "unsupported image encoding"),
        ("rgb8", 4, 4, 12, 40, "48 expected"),
        ("rgb8", 4, 4, 8, 48, "row step 8 is shorter"),
        ("rgb8", 0, 4, 12, 0, "empty or larger"),
        ("rgb8", 5000, 5000, 15000, 10, "empty or larger"),
    ],
)
def test_malformed_raw_images_are_refused_with_the_reason(encoding, height, width, step, size, message):
    with pytest.raises(ValueError, match=message):
        image_message_to_rgb(encoding, height, width, step, bytes(size))


def test_compressed_images_decode_and_garbage_is_refused():
    rgb = _pattern()
    _, png = cv2.imencode(".png", rgb[..., ::-1])
    np.testing.assert_array_equal(compressed_message_to_rgb(png.tobytes()), rgb)
    with pytest.raises(ValueError, match="not a decodable"):
        compressed_message_to_rgb(b"\xff\xd8 not a jpeg")
    with pytest.raises(ValueError, match="empty"):
        compressed_message_to_rgb(b"")


def _observe_until(client, predicate, timeout=20.0):
    """The first observation whose frame ages (s, relative to its state) satisfy `predicate`; a loaded machine may
    deliver a frame late now and then, so freshness is awaited rather than sampled once."""
    deadline = time.monotonic() + timeout
    while True:
        observation = client.get_observation()
        ages = {role: observation.timestamp - t for role, t in observation.image_timestamps.items()}
        if predicate(ages):
            return observation, ages
        if time.monotonic() > deadline:
            raise AssertionError(f"frame ages never satisfied the check within {timeout} s; last: {ages}")
        time.sleep(0.05)


@pytest.mark.ros
def test_bridge_publishes_ros_image_topics_through_the_ros1_backend(ros_master, franka_standin, processes, capsys,
                                                                    make_port_base, tmp_path):
    rgb = _pattern()
    raw = tmp_path / "left.raw"
    raw.write_bytes(rgb[..., ::-1].tobytes())  # bgr8, as most ROS camera drivers publish
    wrist_rgb = np.full((60, 80, 3), (30, 200, 60), np.uint8)
    _, jpeg = cv2.imencode(".jpg", wrist_rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
    (tmp_path / "wrist.jpg").write_bytes(jpeg.tobytes())
    script = tmp_path / "publish.py"
    script.write_text(PUBLISHER)
    publishers = {
        # role: (topic, kind, file, encoding, header stamp age in s)
        "left": ("/cams/left/image_raw", "raw", raw, "bgr8", 0.0),
        "wrist": ("/cams/wrist/image_raw/compressed", "compressed", tmp_path / "wrist.jpg", "", 0.0),
        "right": ("/cams/right/image_raw", "raw", raw, "bgr8", 2.0),  # a driver whose frames arrive 2 s late
    }
    procs = {}
    base = make_port_base()
    config = tmp_path / "bridge.yaml"
    config.write_text(
        "watchdog: {hold_after_s: 0.6, stop_after_s: 2.0}\ncamera_hz: 15\ncameras:\n"
        + "".join(f"  {role}: {{source: ros1, topic: {topic}}}\n" for role, (topic, *_) in publishers.items())
    )
    client = BridgeClient(ClientConfig(cmd_port=base, state_port=base + 1, rpc_port=base + 2, camera_port=base + 3,
                                       camera_roles=("left", "wrist", "right"), rpc_timeout_s=10.0))
    bridge = None
    try:
        for role, (topic, kind, path, encoding, age) in publishers.items():
            procs[role] = processes.start(
                [DEBIAN_PYTHON, str(script), topic, kind, str(path), str(rgb.shape[1]), str(rgb.shape[0]), encoding,
                 "20", str(age)], ros_master, "publisher running")
        bridge = processes.start(
            [sys.executable, "-m", "vjepa_ac.cli", "bridge", "run", "--config", str(config), "--backend", "ros1",
             "--port-base", str(base)], ros_master, "bridge running")
        observation, ages = _observe_until(
            client, lambda a: set(a) == {"left", "wrist", "right"} and abs(a["left"]) < 0.5 and abs(a["wrist"]) < 0.5)
        assert client.state.backend == "ros1"
        # Raw bgr8 arrives as RGB, pixel for pixel (JPEG on the bridge link: within a few levels).
        left = observation.images["left"]
        assert left.shape == rgb.shape
        assert np.abs(left.astype(int) - rgb).mean() < 6
        assert left[8, 8, 1] > 200 and left[30, 10, 0] > 180 and left[30, 50, 2] > 180
        wrist = observation.images["wrist"]
        assert wrist.shape == (60, 80, 3) and np.abs(wrist.astype(int) - wrist_rgb).max() < 12
        # Capture times travel with the frames: the late driver's frames are 2 s older than they arrive. (Ages count
        # from the state that came with the frames, which on a loaded machine may be a little older than a frame.)
        assert ages["right"] - max(ages["left"], ages["wrist"]) > 1.25, ages
        assert camera_frame(observation, "left", 0.5) is left
        with pytest.raises(StaleFrameError, match=r"camera 'right': the newest frame is \d+\.\d\d s old, more than "
                                                  r"the 0\.50 s"):
            camera_frame(observation, "right", 0.5)
        # A driver that stops: its last frame ages and is refused once older than the bound; the others go on.
        processes.stop(procs.pop("left"))
        later, _ = _observe_until(client, lambda a: a["left"] > 0.9 and a["wrist"] < 0.5)
        with pytest.raises(StaleFrameError, match="camera 'left'"):
            camera_frame(later, "left", 0.5)
        assert camera_frame(later, "wrist", 0.5).shape == (60, 80, 3)
        # Goal capture by hand-guiding on this (non-simulated) backend: the bridge is not armed, frames and state
        # come from its streams; while a client has the bridge armed, guiding is refused.
        out = tmp_path / "guided"
        guide = ["goal", "capture", "--robot", "bridge", "--port-base", str(base), "--guide", "--camera", "wrist",
                 "--max-frame-age", "3", "--commands", "capture finish"]
        assert main([*guide, "--out", str(out)]) == 0
        schedule = load_goal_schedule(out)
        assert schedule.camera == "wrist" and schedule.image_size == (60, 80)
        assert client.state.watchdog == "IDLE"  # nothing was armed
        client.connect()
        capsys.readouterr()
        assert main([*guide, "--out", str(tmp_path / "refused")]) == 1
        assert "the bridge is armed (watchdog ARMED) by another client" in capsys.readouterr().err
        assert not (tmp_path / "refused" / "schedule.yaml").exists()
    finally:
        client.close()
        if bridge is not None:
            processes.stop(bridge)
        for proc in procs.values():
            processes.stop(proc)


@pytest.mark.ros
def test_planner_process_reads_a_ros_topic_beside_a_bridge(ros_master, processes, make_port_base, tmp_path):
    """The camera on the workstation's side: `vjepa-ac goal capture --cameras` subscribes to the topic in its own
    rospy node and merges the frames into the bridge's observations (here a MuJoCo bridge without cameras)."""
    rgb = _pattern()
    raw = tmp_path / "left.raw"
    raw.write_bytes(rgb.tobytes())
    script = tmp_path / "publish.py"
    script.write_text(PUBLISHER)
    cams = tmp_path / "cams.yaml"
    cams.write_text("cameras:\n  left: {source: ros1, topic: /ws/left/image_raw}\n")
    bridge_config = tmp_path / "bridge.yaml"
    bridge_config.write_text("camera_hz: 0\nbackend_options:\n  mujoco: {cameras: []}\n")
    base = make_port_base()
    publisher = processes.start([DEBIAN_PYTHON, str(script), "/ws/left/image_raw", "raw", str(raw),
                                 str(rgb.shape[1]), str(rgb.shape[0]), "rgb8", "20", "0"], ros_master,
                                "publisher running")
    bridge = None
    try:
        bridge = processes.start([sys.executable, "-m", "vjepa_ac.cli", "bridge", "run", "--backend", "mujoco",
                                  "--config", str(bridge_config), "--port-base", str(base)], ros_master,
                                 "bridge running", timeout=60)
        out = tmp_path / "goals"
        capture = processes.start(
            [sys.executable, "-m", "vjepa_ac.cli", "goal", "capture", "--robot", "bridge", "--port-base", str(base),
             "--cameras", str(cams), "--out", str(out), "--commands", "capture z- capture finish",
             "--max-frame-age", "3"],  # freshness is tested above; here a loaded machine must not fail the capture
            ros_master, "goal schedule:", timeout=60)
        assert capture.wait(timeout=30) == 0
    finally:
        if bridge is not None:
            processes.stop(bridge)
        processes.stop(publisher)
    schedule = load_goal_schedule(out)
    assert schedule.image_size == (48, 64) and len(schedule.goals) == 2
    for image in schedule.load_images():
        np.testing.assert_array_equal(image, rgb)  # raw topic -> PNG: lossless, RGB order kept
    assert schedule.goals[1].state[2] < schedule.goals[0].state[2] - 0.01  # the jog moved the bridged arm
