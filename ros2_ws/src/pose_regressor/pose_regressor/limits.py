"""Choices, documented ranges and start-up lines shared by the command-line tools, the node and
the libraries.

A light module (no imports): the CLI parser lists them without importing what checks them, and
`replay`, `node_evaluation`, `params` and `bundle` check the same values for their own callers.
"""

#: What `localizer` prints when a signal ends it before the node is configured: its console
#: script (`console.py`, while the node's modules import) and the node's `main` (`rclpy.init`,
#: the node's creation, configure) both print it, and neither may import the other for it. After
#: `rclpy.init` rclpy's own handler takes SIGTERM as well, and cannot tell the two apart.
INTERRUPTED_WHILE_STARTING = (
    "[INFO] [localizer]: interrupted by a signal while starting; nothing was configured"
)

#: Inference backends (the node's `backend` parameter, the tools' `--backend`).
BACKENDS = ("auto", "tensorrt", "onnxruntime", "torch")
#: What the node does without a camera that stopped (its `missing_camera` parameter): wait for
#: it, or localize with a black image in its place (`pipeline.LocalizerPipeline.add_image`).
MISSING_CAMERA_POLICIES = ("wait", "black")

MIN_RATE = 0.01  # replay speed: 100x slower than recorded
MAX_RATE = 1000.0  # an hour of recording in 3.6 s
MAX_DURATION_S = 7 * 24 * 3600.0  # a week
MIN_SKIP_EMPTY_S = 0.01  # shorter would publish a whole bag's sequences in one burst
MAX_START_DELAY_S = 600.0
MAX_MC_SAMPLES = 256  # S, Monte-Carlo samples per camera set (bundle, node parameter and tools)
# the node's covariance_inflation, and a bundle's suggested one that it takes (0: the bundle's)
MAX_COVARIANCE_INFLATION = 1e6
# `eval-node` fails when fewer of the camera sets the replay published are accounted for by the
# node (poses received + sets it replaced, rejected or failed on) than this fraction.
MIN_DELIVERY_RATIO = 0.9
#: The share of the calibration frames that the suggested uncertain-flag thresholds flag
#: (`eval-checkpoint --flag-share`), and its largest value: a flag on more than half the poses is
#: no flag.
DEFAULT_FLAG_SHARE = 0.05
MAX_FLAG_SHARE = 0.5
#: The largest uncertain-flag thresholds (the node's `max_position_std` in m and
#: `max_rotation_std` in rad): a threshold at its largest switches that check off (no pose is
#: flagged for that std, `pipeline.uncertainty_reason`). The calibrated stds themselves are
#: unbounded: a rotation std well above pi rad is what a view far from training can give.
MAX_FLAG_POSITION_STD = 1e6
MAX_FLAG_ROTATION_STD = 3.141592653589793  # pi (this module imports nothing)
#: Relative tolerance of "at its largest": what rclpy accepts as a range's bound
#: (`Node.PARAM_REL_TOL`), so that `ros2 param set ... max_rotation_std 3.14159` is pi too.
FLAG_OFF_REL_TOL = 1e-6
