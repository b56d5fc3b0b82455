#!/usr/bin/env bash
# Entrypoint of the pose_regressor robot images (docker/Dockerfile, docker/Dockerfile.jetson):
# sources ROS 2 and the colcon-built workspace, then runs the command (default:
# `ros2 launch pose_regressor localize.launch.py`). The HEALTHCHECK goes through it too.
set -eo pipefail

# ROS setup scripts read unset variables, so `set -u` stays off while sourcing them.
# shellcheck source=/dev/null
source "/opt/ros/${ROS_DISTRO:?ROS_DISTRO is not set}/setup.bash"
# shellcheck source=/dev/null
source "${POSE_REGRESSOR_INSTALL:-/opt/pose_regressor/install}/setup.bash"

exec "$@"
