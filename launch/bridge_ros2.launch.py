"""franka_ros2 bringup + the vjepa-ac bridge (ros2 backend) on the robot-side host (ROS 2 Humble).

    ros2 launch <repo>/launch/bridge_ros2.launch.py robot_ip:=172.16.0.2 arm_id:=fr3

The bridge streams joint set-points to a forward position controller (`/joint_position_controller/commands`);
load one in franka_ros2's controllers.yaml (`forward_command_controller/ForwardCommandController`, interface
`position`) or set `command_interface: trajectory` in the bridge YAML for the joint trajectory controller.
"""

from pathlib import Path

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, ExecuteProcess, IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.substitutions import FindPackageShare

HERE = Path(__file__).resolve().parent


def generate_launch_description() -> LaunchDescription:
    robot_ip = LaunchConfiguration("robot_ip")
    arm_id = LaunchConfiguration("arm_id")
    config = LaunchConfiguration("config")
    bringup = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(PathJoinSubstitution([FindPackageShare("franka_bringup"), "launch", "franka.launch.py"])),
        launch_arguments={"robot_ip": robot_ip, "arm_id": arm_id, "load_gripper": "true"}.items(),
    )
    bridge = ExecuteProcess(
        cmd=["vjepa-ac", "bridge", "run", "--config", config, "--backend", "ros2", "--robot", arm_id],
        output="screen",
    )
    return LaunchDescription([
        DeclareLaunchArgument("robot_ip", description="the arm's FCI address"),
        DeclareLaunchArgument("arm_id", default_value="fr3", description="fr3 (franka_ros2 supports the FR3)"),
        DeclareLaunchArgument("config", default_value=str(HERE / "fr3.yaml"), description="bridge YAML"),
        bringup,
        bridge,
    ])
