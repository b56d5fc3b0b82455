"""ament_python package `pose_regressor`: everything the robot runs.

Works with `colcon build` in a ROS 2 workspace and with `pip install -e` for development.
"""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = "pose_regressor"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(exclude=["test", "test.*"]),
    package_data={PACKAGE: ["py.typed"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        # `launch` is a link to the repository's top-level launch/ folder: one copy only.
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml") + glob("config/*.xml")),
        (f"share/{PACKAGE}/rviz", glob("rviz/*.rviz")),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="pose_regressor maintainers",
    maintainer_email="maintainers@pose-regressor.dev",
    description="Real-time camera relocalization with MC-dropout uncertainty.",
    license="Apache-2.0",
    python_requires=">=3.10",
    entry_points={
        "console_scripts": [
            "localizer = pose_regressor.console:localizer",
            "pose-regressor = pose_regressor.console:pose_regressor",
        ],
    },
)
