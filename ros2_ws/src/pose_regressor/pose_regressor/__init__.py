"""pose_regressor: real-time camera relocalization (robot side, ROS-free core + thin rclpy node)."""

__version__ = "0.1.0"
