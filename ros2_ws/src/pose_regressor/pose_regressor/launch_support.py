"""Plain helpers of `localize.launch.py` (ROS-free, so that tests run them without `launch`).

The RViz config names its topics with a `<robot_namespace>` placeholder, as Nav2's namespaced
RViz config does; the launch file writes a copy with the launch namespace filled in, so that
`namespace:=robot1` shows /robot1/localizer/pose_with_covariance and /robot1/front/image_raw.
"""

from __future__ import annotations

NAMESPACE_PLACEHOLDER = "<robot_namespace>"


def normalized_namespace(namespace: str) -> str:
    """'' for the root namespace, else '/a/b' (a leading slash, no trailing one)."""
    parts = [part for part in namespace.strip().split("/") if part]
    return "/" + "/".join(parts) if parts else ""


def namespaced_rviz_config(text: str, namespace: str) -> str:
    """The RViz config `text` with every `<robot_namespace>` replaced by the namespace."""
    return text.replace(NAMESPACE_PLACEHOLDER, normalized_namespace(namespace))


def topic_list(text: str) -> list[str]:
    """The `camera_topics:=...` launch argument ('[a, /b]', 'a,/b' or 'a') as a list of names."""
    return [topic.strip().strip("'\"") for topic in text.strip().strip("[]").split(",") if topic.strip()]
