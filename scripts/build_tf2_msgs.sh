#!/usr/bin/env bash
# Builds the ROS 2 interface package tf2_msgs (only TFMessage, for /tf) into the venv.
# tf2_msgs is not on PyPI; a real ROS 2 install gets it from the distro. Here it is generated with the
# PyPI rosidl/ament wheels (requirements/dev.txt) and installed with the venv as its prefix, in the same
# layout as the ros-jazzy-*-msgs wheels (lib/, share/, include/, site-packages/tf2_msgs), so that it is
# found at run time like them: no extra environment variables.
# Idempotent: skips when the stamp matches this script, the Python version and the installed ROS wheels.
# Usage: VENV=.venv bash scripts/build_tf2_msgs.sh   (called by scripts/setup_env.sh)
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
fail() {
  echo "build_tf2_msgs: $*" >&2
  exit 1
}
[[ -x "$VENV/bin/python" ]] || fail "no Python in $VENV; run make setup first"
prefix=$(cd "$VENV" && pwd)
py="$prefix/bin/python"
site=$("$py" -c "import sysconfig; print(sysconfig.get_path('purelib'))")
stamp="$prefix/.tf2_msgs-stamp"
manifest="$prefix/.tf2_msgs-manifest"

# Inputs: this script (it holds the package source), the interpreter and the ROS wheels it builds on.
wanted=$({
  cat "$0"
  "$py" --version
  find "$site" -maxdepth 1 -name 'ros_*.dist-info' -printf '%f\n' | sort
} | sha256sum | cut -d' ' -f1)
if [[ -f "$stamp" && "$(cat "$stamp")" == "$wanted" && -f "$site/tf2_msgs/msg/_tf_message.py" ]]; then
  exit 0
fi

for tool in cmake make cc c++; do
  command -v "$tool" >/dev/null ||
    fail "'$tool' not found; install it (apt-get install cmake build-essential, or pin the 'cmake' wheel in requirements/dev.txt)"
done
"$py" -c "import rosidl_generator_py, em, lark, catkin_pkg" 2>/dev/null ||
  fail "the rosidl build wheels are missing in $VENV; install requirements/dev.txt"
python_include=$("$py" -c "import sysconfig; print(sysconfig.get_paths()['include'])")
[[ -f "$python_include/Python.h" ]] || fail "Python headers not found in $python_include (install python3-dev)"

echo "setup: building tf2_msgs (TFMessage) into $VENV with cmake (about 15 s)"
work=$(mktemp -d "${TMPDIR:-/tmp}/tf2_msgs.XXXXXX")
trap 'rm -rf "$work"' EXIT
src="$work/src"
mkdir -p "$src/msg"

# The interface, as in ros2/geometry2 (tf2_msgs/msg/TFMessage.msg); same definition, same type hash.
echo "geometry_msgs/TransformStamped[] transforms" >"$src/msg/TFMessage.msg"

cat >"$src/package.xml" <<'EOF'
<?xml version="1.0"?>
<package format="3">
  <name>tf2_msgs</name>
  <version>0.36.0</version>
  <description>tf2_msgs/TFMessage only, built by pose_regressor's scripts/build_tf2_msgs.sh for dev and CI.</description>
  <maintainer email="dev@example.com">pose_regressor</maintainer>
  <license>BSD-3-Clause</license>
  <buildtool_depend>ament_cmake</buildtool_depend>
  <buildtool_depend>rosidl_default_generators</buildtool_depend>
  <depend>geometry_msgs</depend>
  <exec_depend>rosidl_default_runtime</exec_depend>
  <member_of_group>rosidl_interface_packages</member_of_group>
  <export>
    <build_type>ament_cmake</build_type>
  </export>
</package>
EOF

cat >"$src/CMakeLists.txt" <<'EOF'
cmake_minimum_required(VERSION 3.21)
project(tf2_msgs)
find_package(ament_cmake REQUIRED)
find_package(rosidl_default_generators REQUIRED)
find_package(geometry_msgs REQUIRED)
find_package(Python3 REQUIRED COMPONENTS Interpreter Development)
rosidl_generate_interfaces(${PROJECT_NAME} "msg/TFMessage.msg" DEPENDENCIES geometry_msgs)
ament_export_dependencies(rosidl_default_runtime)
ament_package()

# The PyPI wheels' exported *__rosidl_generator_py targets name their build machine's Python
# include directory (/opt/python/cp311-cp311/include/python3.11); use this interpreter's instead.
get_property(_targets DIRECTORY PROPERTY IMPORTED_TARGETS)
foreach(_target IN LISTS _targets)
  get_target_property(_includes ${_target} INTERFACE_INCLUDE_DIRECTORIES)
  if(_includes AND "${_includes}" MATCHES "/opt/python/")
    list(FILTER _includes EXCLUDE REGEX "^/opt/python/")
    list(APPEND _includes ${Python3_INCLUDE_DIRS})
    set_target_properties(${_target} PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${_includes}")
  endif()
endforeach()
EOF

log="$work/build.log"
build() {
  AMENT_PREFIX_PATH="$prefix" cmake -S "$src" -B "$work/build" \
    -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF \
    -DCMAKE_INSTALL_PREFIX="$prefix" -DCMAKE_PREFIX_PATH="$prefix" -DPython3_EXECUTABLE="$py" &&
    AMENT_PREFIX_PATH="$prefix" cmake --build "$work/build" --parallel "$(nproc)"
}
build >"$log" 2>&1 || {
  tail -n 40 "$log" >&2
  fail "building tf2_msgs failed (last lines of the log above)"
}

# Replace an earlier build: remove what it installed (its files are listed in the manifest).
if [[ -f "$manifest" ]]; then
  while IFS= read -r file; do rm -f "$file"; done <"$manifest"
fi
rm -f "$stamp"
cmake --install "$work/build" >>"$log" 2>&1 || {
  tail -n 20 "$log" >&2
  fail "installing tf2_msgs into $VENV failed"
}
# ament installs egg-info metadata for the Python package; without it pip freeze (make lock) does not
# list tf2_msgs, which is not a PyPI name.
rm -rf "$site"/tf2_msgs-*.egg-info
grep -v '\.egg-info/' "$work/build/install_manifest.txt" >"$manifest"

"$py" -c "from tf2_msgs.msg import TFMessage; TFMessage()" ||
  fail "tf2_msgs was installed but does not import"
echo "$wanted" >"$stamp"
