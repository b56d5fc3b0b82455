"""The `localizer` ROS 2 node: a thin managed (lifecycle) shell around `LocalizerPipeline`.

Lifecycle (like Nav2's servers; every legal transition works any number of times):
  configure:  read and validate the parameters, load the bundle and the engine, create publishers
  activate:   subscribe to the cameras (and their camera_info, once), start the worker and timers
  deactivate: drop the subscriptions, stop the worker (a later activate starts a fresh one)
  cleanup:    drop publishers, engine and bundle (a later configure reads the parameters again)
  shutdown:   release everything; the process then exits with code 0
An illegal transition request is refused with one log line (`lifecycle_guard`). With
`autostart` (the default) the node configures and activates itself; with `autostart: false`
a lifecycle manager owns the transitions.

Publishes (stamped with the input set's stamp, frame `map_frame`, reliable QoS):
  ~/pose (PoseStamped), ~/pose_with_covariance (PoseWithCovarianceStamped), ~/path (Path),
  /diagnostics (DiagnosticArray, 1 Hz, status "pose_regressor: <fully qualified node name>"),
  optionally initialpose (relative: Nav2 AMCL's topic in the node's namespace) and /tf.
Parameters: `pose_regressor.params` (what each one is and when it may change).
"""

from __future__ import annotations

import difflib
import math
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import rclpy
import rclpy.executors
import rclpy.logging
import rclpy.utilities
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseStamped, PoseWithCovarianceStamped
from nav_msgs.msg import Path
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult
from rclpy.event_handler import QoSMessageLostInfo, SubscriptionEventCallbacks, UnsupportedEventTypeError
from rclpy.exceptions import ParameterUninitializedException
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from pose_regressor.bundle import (
    ModelBundle,
    inflation_line,
    inflation_problem,
    load_bundle,
    preprocess,
    resize_to_input,
    suggested_inflation,
)
from pose_regressor.camera_info_check import (
    ExpectedCamera,
    camera_info_topic,
    check_camera_info,
    expected_cameras,
)
from pose_regressor.covariance import to_convention
from pose_regressor.engines import load_engine
from pose_regressor.image_decode import ImageDecodeError, decode_message, quiet_codec_logs
from pose_regressor.initial_pose import InitialPosePolicy
from pose_regressor.lifecycle_guard import current_state, guard_change_state
from pose_regressor.limits import INTERRUPTED_WHILE_STARTING, MAX_FLAG_POSITION_STD, MAX_FLAG_ROTATION_STD
from pose_regressor.messages import diagnostic_array, ns_from_time, pose_stamped, pose_with_covariance
from pose_regressor.params import (
    PARAMETERS,
    SPECS,
    Change,
    LocalizerParams,
    ParameterError,
    ParameterSpec,
    bundle_flag_threshold,
    inflation_in_force,
    validate_change,
    widened,
)
from pose_regressor.pipeline import (
    LocalizationResult,
    LocalizerPipeline,
    LogThrottle,
    config_for_bundle,
    flag_check_off,
    message_kind,
)
from pose_regressor.teardown import teardown_watchdog
from pose_regressor.tf_bridge import TfBridge, TransformUnavailable

NODE_NAME = "localizer"
DIAGNOSTIC_PREFIX = "pose_regressor: "
# Reliable, as AMCL publishes its pose: an EKF or a recorder asking for reliable would not match a
# best-effort publisher. A short queue, because a late pose is worth less than the next one.
OUTPUT_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
# Parameters that ROS itself declares or reads; never reported as unknown.
ROS_PARAMETERS = ("use_sim_time", "start_type_description_service")
# Parameter name -> PipelineConfig field, for the ones the worker picks up at runtime.
PIPELINE_FIELDS = {
    "sync_slop": "sync_slop_s",
    "seed": "seed",
    "max_position_std": "max_position_std",
    "max_rotation_std": "max_rotation_std",
    "camera_timeout": "camera_timeout_s",
    "missing_camera": "missing_camera",
}


class ConfigurationError(RuntimeError):
    """The node cannot start with these parameters or this bundle (one clear line)."""


def one_line(exc: BaseException) -> str:
    """An exception as one log line; its type is named unless it is one of our own clear errors."""
    text = " ".join(str(exc).split())
    if isinstance(exc, (ConfigurationError, ParameterError)) or type(exc).__name__ in (
        "BundleError",
        "EngineError",
        "EngineUnavailableError",
        "TfUnavailableError",
    ):
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _descriptor(spec: ParameterSpec) -> ParameterDescriptor:
    descriptor = ParameterDescriptor(description=spec.description, read_only=spec.change is Change.READ_ONLY)
    constraints = [] if spec.change is Change.RUNTIME else [spec.change.value]
    if spec.choices:
        constraints.insert(0, "one of: " + ", ".join(spec.choices))
    descriptor.additional_constraints = "; ".join(constraints)
    if spec.min_value is not None and not isinstance(spec.default, bool):
        if isinstance(spec.default, int):
            descriptor.integer_range = [
                IntegerRange(from_value=int(spec.min_value), to_value=int(spec.max_value or 0))
            ]
        elif isinstance(spec.default, float):
            descriptor.floating_point_range = [
                FloatingPointRange(from_value=float(spec.min_value), to_value=float(spec.max_value or 0.0))
            ]
    return descriptor


def _widened(parameter: Parameter) -> Parameter:
    """`parameter`, or in its place the value it means (`params.widened`): a double for an integer
    given to a double parameter, a list for one string given to a list parameter."""
    value = widened(parameter.name, parameter.value)
    return parameter if value is parameter.value else Parameter(parameter.name, value=value)


@dataclass(frozen=True)
class CameraInput:
    """One camera as subscribed: the resolved topic and whether it carries CompressedImage."""

    topic: str
    compressed: bool
    info_topic: str


def camera_inputs(
    node: LifecycleNode, topics: Sequence[str], params: LocalizerParams
) -> tuple[CameraInput, ...]:
    """Resolves each camera topic in the node's namespace (remappings applied) and names the
    topic to subscribe as image_transport does: `<base>/compressed` for the compressed transport."""
    inputs = []
    for index, topic in enumerate(topics):
        base = node.resolve_topic_name(topic)
        if base.endswith("/compressed"):  # given as the transport topic itself
            inputs.append(CameraInput(base, True, camera_info_topic(base)))
        elif params.transport_for(index) == "compressed":
            inputs.append(CameraInput(base + "/compressed", True, camera_info_topic(base)))
        else:
            inputs.append(CameraInput(base, False, camera_info_topic(base)))
    return tuple(inputs)


class LocalizerNode(LifecycleNode):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(NODE_NAME, **kwargs)
        self._widen_overrides()
        for spec in PARAMETERS:
            self.declare_parameter(spec.name, spec.default, _descriptor(spec))
        self._warn_unknown_overrides()
        guard_change_state(self, self.get_logger().error)
        self.add_pre_set_parameters_callback(self._widen)
        self.add_on_set_parameters_callback(self._validate_parameters)
        self.add_post_set_parameters_callback(self._apply_parameters)
        self.diagnostic_name = DIAGNOSTIC_PREFIX + self.get_fully_qualified_name()
        self.autostart = bool(self.get_parameter("autostart").value)
        self.finished = False  # set by the shutdown transition: main() then exits with 0
        self.params: LocalizerParams | None = None
        self.bundle: ModelBundle | None = None
        self.pipeline: LocalizerPipeline | None = None
        self.inputs: tuple[CameraInput, ...] = ()
        self._image_subscriptions: list[Any] = []
        self._loss_unsupported_logged = False
        self._info_subscriptions: dict[int, Any] = {}
        self._info_done: set[int] = set()  # cameras whose camera_info was compared
        self._expected: dict[str, ExpectedCamera] | None = None
        self._outputs: dict[str, Any] = {}
        self._tf: TfBridge | None = None
        self._timers: list[Any] = []
        self._path: deque[PoseStamped] = deque()
        self._path_published = -math.inf  # monotonic seconds of the last ~/path
        self._resize_noted: set[int] = set()  # cameras whose size mismatch was logged
        self._initial_pose = InitialPosePolicy()
        self._last_confident: PoseWithCovarianceStamped | None = None
        self._withheld = 0  # poses flagged uncertain and not published (gate_uncertain)
        self._covariance_inflation = 1.0  # in force: the parameter's, or for 0 the bundle's suggestion
        self._tf_log = LogThrottle(10.0)  # a missing odom transform repeats every frame

    # ------------------------------------------------------------------ parameters
    def parameter_values(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for spec in PARAMETERS:
            try:
                values[spec.name] = self.get_parameter(spec.name).value
            except ParameterUninitializedException:
                # An empty YAML list (`camera_topics: []`) has no type, so ROS leaves it unset.
                values[spec.name] = [] if isinstance(spec.default, list) else None
        return values

    def _widen_overrides(self) -> None:
        # Declaring reads the overrides (command line, params file) without any set callback, and
        # a static parameter refuses another type there: widen them before declaring.
        for name, override in list(self._parameter_overrides.items()):
            self._parameter_overrides[name] = _widened(override)

    def _widen(self, parameters: list[Parameter]) -> list[Parameter]:
        """Before ROS checks the types of a set: each value as the node takes it (`_widened`)."""
        return [_widened(p) for p in parameters]

    def _warn_unknown_overrides(self) -> None:
        known = set(SPECS) | set(ROS_PARAMETERS)
        unknown = sorted(
            name
            for name in self._parameter_overrides
            if name not in known and not name.startswith("qos_overrides.")
        )
        if not unknown:
            return
        described = []
        for name in unknown:
            shown = name if len(name) <= 60 else name[:57] + "..."
            close = difflib.get_close_matches(name, SPECS, n=1)
            described.append(f"{shown} (did you mean {close[0]}?)" if close else shown)
        self.get_logger().warn(
            f"unknown parameter(s) in the params file or command line, ignored: {', '.join(described)}"
        )

    def _validate_parameters(self, parameters: list[Parameter]) -> SetParametersResult:
        changes = {p.name: p.value for p in parameters if p.name in SPECS}
        if not changes:
            return SetParametersResult(successful=True)
        state = current_state(self)
        try:
            validate_change(self.parameter_values(), changes)
            for name in changes:
                if SPECS[name].change is Change.UNCONFIGURED and state != "unconfigured":
                    raise ParameterError(
                        f"parameter '{name}' may change only while the node is unconfigured (it is "
                        f"{state}): deactivate and clean up the node, set it, then configure"
                    )
            if "mc_samples" in changes:
                self._check_samples(int(changes["mc_samples"]))
            pipeline = self.pipeline
            if pipeline is not None:
                pipeline.check_settings(**self._pipeline_changes(changes))
        except (ParameterError, ValueError) as exc:
            self.get_logger().warn(f"refused parameter change: {exc}")
            return SetParametersResult(successful=False, reason=str(exc))
        return SetParametersResult(successful=True)

    def _check_samples(self, requested: int) -> None:
        """Refuses an S the loaded engine cannot run (only known once configured)."""
        pipeline, bundle = self.pipeline, self.bundle
        if pipeline is None or bundle is None:
            return
        samples = requested or bundle.mc_samples
        problem = bundle.samples_problem(samples)
        if problem is not None:
            raise ParameterError(f"parameter 'mc_samples': {problem}")
        limit = getattr(pipeline.engine, "max_samples", None)  # any Engine; InferenceEngine has it
        if limit is not None and samples > limit:
            raise ParameterError(
                f"parameter 'mc_samples' = {samples} is more than the engine runs (at most {limit} "
                "samples); build the engine with a larger max_samples or choose fewer samples"
            )

    def _pipeline_changes(self, changes: dict[str, Any]) -> dict[str, Any]:
        """The PipelineConfig fields that `changes` (parameter name -> value) set."""
        config = {PIPELINE_FIELDS[k]: v for k, v in changes.items() if k in PIPELINE_FIELDS}
        if self.bundle is not None:
            if "mc_samples" in changes:
                config["mc_samples"] = int(changes["mc_samples"]) or self.bundle.mc_samples
            for name in ("max_position_std", "max_rotation_std"):
                if name in changes:
                    config[name] = self._flag_threshold(self.bundle, name, float(changes[name]))[0]
        return config

    @staticmethod
    def _flag_threshold(bundle: ModelBundle, name: str, value: float) -> tuple[float, str]:
        """The uncertain flag's threshold `name` in force for parameter `value` (0: the bundle's)."""
        return bundle_flag_threshold(bundle.uncertain_flag, name, value)

    def _apply_parameters(self, parameters: list[Parameter]) -> None:
        try:
            self._apply_changes({p.name: p.value for p in parameters if p.name in SPECS})
        except Exception as exc:  # validated before, so a bug: say so, and never stop the node
            self.get_logger().error(f"could not apply the parameter change: {one_line(exc)}")

    def _apply_changes(self, changes: dict[str, Any]) -> None:
        params, pipeline = self.params, self.pipeline
        if not changes or params is None or pipeline is None:
            return  # unconfigured: configure reads the parameters
        values: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in changes.items()}
        self.params = params = replace(params, **values)
        config = self._pipeline_changes(changes)
        if config:
            pipeline.reconfigure(**config)
        if "covariance_inflation" in changes and self.bundle is not None:
            self._covariance_inflation = self._inflation(self.bundle, params.covariance_inflation)[0]
        if "path_length" in changes:
            self._path = deque(self._path, maxlen=max(params.path_length, 1))
        if "publish_initialpose" in changes:
            self._set_initialpose_output(params.publish_initialpose)
        if "odom_frame" in changes and self._tf is not None:
            # map -> odom needs /tf (odom -> base_frame); map -> base_frame ("") does not
            self._tf.listen(bool(params.odom_frame))
        shown = ", ".join(f"{k} = {v!r}" + self._in_force(k, v) for k, v in changes.items())
        self.get_logger().info(f"parameters changed: {shown} (in effect from the next camera set)")

    def _in_force(self, name: str, value: Any) -> str:
        """` (the bundle's 0.182)` for a flag threshold or the inflation set to 0; else nothing."""
        if self.bundle is None or value:
            return ""
        if name == "covariance_inflation":
            inflation, source = self._inflation(self.bundle, float(value))
            if source == "the bundle's":
                return f" (the bundle's {inflation:.3g})"
            return f" (1: {inflation_problem(self.bundle.provenance) or 'the bundle suggests none'})"
        if name not in ("max_position_std", "max_rotation_std"):
            return ""
        threshold, source = self._flag_threshold(self.bundle, name, float(value))
        return f" ({source} {threshold:.3g})"

    @staticmethod
    def _inflation(bundle: ModelBundle, value: float) -> tuple[float, str]:
        """The covariance inflation in force for parameter `value` (0: the bundle's suggestion)."""
        return inflation_in_force(value, suggested_inflation(bundle.provenance))

    # ------------------------------------------------------------------ lifecycle
    def configure_pipeline(self) -> None:
        """Everything on_configure does before creating publishers; raises on any problem."""
        params = LocalizerParams.from_values(self.parameter_values())
        bundle = load_bundle(params.bundle)
        # The bundle's topics (/<camera>/image_raw) are made relative so that they follow the
        # node's namespace, as Nav2's default topic names do.
        topics = params.camera_topics or tuple(camera.topic.lstrip("/") for camera in bundle.cameras)
        if len(topics) != bundle.num_cameras:
            raise ConfigurationError(
                f"camera_topics has {len(topics)} topic(s) but the bundle expects {bundle.num_cameras} "
                f"camera(s) in this order: {', '.join(bundle.camera_names)}"
            )
        if len(params.image_transport) not in (1, len(topics)):
            raise ConfigurationError(
                f"image_transport has {len(params.image_transport)} entries but there are {len(topics)} "
                "camera topics; give one or one per topic"
            )
        inputs = camera_inputs(self, topics, params)
        try:
            engine = load_engine(bundle, params.backend)
        except Exception as exc:  # engines raise many types (missing providers, bad graphs)
            raise ConfigurationError(
                f"cannot load the {params.backend} engine for {bundle.path}: {one_line(exc)}"
            ) from exc
        samples = params.mc_samples or bundle.mc_samples
        problem = bundle.samples_problem(samples)
        if problem is not None:
            raise ConfigurationError(f"mc_samples: {problem}")
        limit = engine.max_samples
        if limit is not None and samples > limit:
            raise ConfigurationError(
                f"mc_samples = {samples} is more than the {params.backend} engine runs (at most {limit})"
            )
        description = engine.describe()
        max_position_std, position_source = self._flag_threshold(
            bundle, "max_position_std", params.max_position_std
        )
        max_rotation_std, rotation_source = self._flag_threshold(
            bundle, "max_rotation_std", params.max_rotation_std
        )
        config = config_for_bundle(
            bundle,
            sync_slop_s=params.sync_slop,
            mc_samples=samples,
            seed=params.seed,
            max_position_std=max_position_std,
            max_rotation_std=max_rotation_std,
            camera_timeout_s=params.camera_timeout,
            missing_camera=params.missing_camera,
        )
        buffer = np.empty(bundle.images_shape, dtype=np.uint8)  # reused for every set
        self.pipeline = LocalizerPipeline(
            config,
            engine,
            self._publish,
            self._engine_error,
            engine_name=f"{description.backend} {description.device} {description.precision}",
            prepare=lambda images: preprocess(images, bundle, out=buffer),
            node_clock=self._node_seconds,
        )
        self.params, self.inputs, self.bundle = params, inputs, bundle
        self._expected = expected_cameras(bundle)
        members = bundle.ensemble_members
        self.get_logger().info(
            f"bundle {bundle.path}: cameras {', '.join(bundle.camera_names)} on "
            f"{', '.join(i.topic for i in inputs)}; engine {description} ({engine.chosen_because}); "
            f"{samples} MC samples"
            + ("" if params.mc_samples else " (the bundle's)")
            + (_ensemble_note(samples, members, bundle.dropout) if members > 1 else "")
            + f"; uncertain flag: position std > {max_position_std:.3g} m ({position_source}"
            + (", check off" if flag_check_off(max_position_std, MAX_FLAG_POSITION_STD) else "")
            + f") or rotation std > {math.degrees(max_rotation_std):.3g} deg ({rotation_source}"
            + (", check off" if flag_check_off(max_rotation_std, MAX_FLAG_ROTATION_STD) else "")
            + ")"
            + (
                f"; position variance + {bundle.distance_prior.k:g} x (distance to the nearest of "
                f"{len(bundle.distance_prior.positions)} training positions)^2"
                if bundle.distance_prior is not None
                else ""
            )
        )
        inflation, source = self._inflation(bundle, params.covariance_inflation)
        self._covariance_inflation = inflation
        found = inflation_line(bundle.provenance)
        if found:
            shown = f"{inflation:.3g}" + ("" if source == "parameter" else f", {source}")
            self.get_logger().info(f"{found} (now {shown})")
        elif source != "parameter":
            problem = inflation_problem(bundle.provenance)
            why = (
                f"{problem} (provenance.eval_metrics.error_correlation)"
                if problem
                else "this bundle was exported without one (no error_correlation in its evaluation)"
            )
            (self.get_logger().warn if problem else self.get_logger().info)(
                f"covariance_inflation 0 takes the bundle's suggested inflation, but {why}: each pose's "
                "own covariance is published (1)"
            )
        units_warning = bundle.units_warning()
        if units_warning:
            self.get_logger().warn(units_warning)

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            self.configure_pipeline()
            assert self.params is not None
            self._outputs = {
                "pose": self.create_publisher(PoseStamped, "~/pose", OUTPUT_QOS),
                "pose_cov": self.create_publisher(
                    PoseWithCovarianceStamped, "~/pose_with_covariance", OUTPUT_QOS
                ),
                "path": self.create_publisher(Path, "~/path", OUTPUT_QOS),
                "diagnostics": self.create_publisher(DiagnosticArray, "/diagnostics", OUTPUT_QOS),
            }
            self._set_initialpose_output(self.params.publish_initialpose)
            if self.params.publish_tf:
                self._tf = TfBridge(self, listen=bool(self.params.odom_frame))
        except Exception as exc:  # whatever raised: one line, and the node stays unconfigured
            if self.context.ok():
                self.get_logger().error("cannot configure: " + one_line(exc))
            # else a signal shut the context down mid-configure (an import interrupted in a C
            # extension fails as "ImportError: initialization failed"): main says so in one line
            self._release()
            return TransitionCallbackReturn.FAILURE
        self._path = deque(maxlen=max(self.params.path_length, 1))
        self._initial_pose.reset()
        self._last_confident = None
        self._withheld = 0  # as the new pipeline's counters
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            self._subscribe()
            assert self.pipeline is not None
            self.pipeline.start()
            self._timers = [
                # 1 Hz: the rate diagnostic_aggregator and rqt_robot_monitor expect.
                self.create_timer(1.0, self._guarded(self._publish_diagnostics)),
                # An AMCL that (re)starts gets its initial pose within 0.5 s of being discovered.
                self.create_timer(0.5, self._guarded(self._check_initialpose)),
            ]
        except Exception as exc:
            self.get_logger().error("cannot activate: " + one_line(exc))
            self._deactivate()
            return TransitionCallbackReturn.FAILURE
        self.get_logger().info("active: localizing")
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._deactivate()
        self.get_logger().info("inactive")
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        self.finished = True
        self.get_logger().info("shut down")
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.get_logger().error(f"error while in state {state.label}: releasing everything (unconfigured)")
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def _subscribe(self) -> None:
        for index, camera in enumerate(self.inputs):
            msg_type = CompressedImage if camera.compressed else Image
            self._image_subscriptions.append(self._image_subscription(msg_type, camera.topic, index))
        if self._expected is None:
            return
        for index, camera in enumerate(self.inputs):
            if index in self._info_done:
                continue
            self._info_subscriptions[index] = self.create_subscription(
                CameraInfo, camera.info_topic, self._camera_info_callback(index), qos_profile_sensor_data
            )

    def _image_subscription(self, msg_type: Any, topic: str, index: int) -> Any:
        """A camera subscription that also counts the frames DDS saw go missing on the way
        (best-effort samples dropped by the transport are otherwise invisible)."""
        callback = self._image_callback(index)

        def on_lost(info: QoSMessageLostInfo) -> None:
            if self.pipeline is not None:
                self.pipeline.record_lost(index, int(info.total_count_change))

        try:
            return self.create_subscription(
                msg_type,
                topic,
                callback,
                qos_profile_sensor_data,
                event_callbacks=SubscriptionEventCallbacks(message_lost=on_lost),
            )
        except UnsupportedEventTypeError:
            if not self._loss_unsupported_logged:
                self._loss_unsupported_logged = True
                self.get_logger().info(
                    "this RMW does not report lost messages: frames_lost stays 0 in /diagnostics"
                )
            return self.create_subscription(msg_type, topic, callback, qos_profile_sensor_data)

    def _deactivate(self) -> None:
        for subscription in [*self._image_subscriptions, *self._info_subscriptions.values()]:
            self.destroy_subscription(subscription)
        self._image_subscriptions = []
        self._info_subscriptions = {}
        for timer in self._timers:
            self.destroy_timer(timer)
        self._timers = []
        if self.pipeline is not None:
            self.pipeline.stop()

    def _release(self) -> None:
        """Back to the unconfigured state: nothing of the last configure is left."""
        self._deactivate()
        for publisher in self._outputs.values():
            self.destroy_publisher(publisher)
        self._outputs = {}
        if self._tf is not None:
            self._tf.destroy()
            self._tf = None
        self.pipeline = None
        self.params = None
        self.bundle = None
        self.inputs = ()
        self._expected = None
        self._info_done = set()
        self._path.clear()
        self._resize_noted.clear()

    def _guarded(self, callback: Callable[[], None]) -> Callable[[], None]:
        """A timer callback that logs what it raises instead of ending the executor (and the node)."""
        throttle = LogThrottle(10.0)

        def run() -> None:
            try:
                callback()
            except Exception as exc:
                if throttle.check(type(exc).__name__) is not None:
                    self.get_logger().error(f"{callback.__name__} failed: {one_line(exc)}")

        return run

    def _node_seconds(self) -> float:
        """The node clock (follows /clock under use_sim_time) in seconds, for timeouts."""
        return float(self.get_clock().now().nanoseconds) / 1e9

    # ------------------------------------------------------------------ input
    def _image_callback(self, index: int) -> Callable[[Image | CompressedImage], None]:
        def callback(msg: Image | CompressedImage) -> None:
            self._on_image(index, msg)

        return callback

    def _on_image(self, index: int, msg: Image | CompressedImage) -> None:
        """One camera message: checked, decoded and handed to the synchronizer.

        A message that cannot be used (no stamp, undecodable, wrong size with
        `resize_mismatched: false`) is dropped and counted in `rejected_images`; the warning is
        logged the first time per camera and kind of problem, then at most once per
        `PipelineConfig.report_interval_s` with the number of lines left out.
        Nothing a message holds can raise out of this callback (it would stop the executor).
        """
        pipeline, bundle, params = self.pipeline, self.bundle, self.params
        if pipeline is None or bundle is None or params is None:
            return
        camera = bundle.cameras[index]
        try:
            self._use_image(index, msg, pipeline, bundle, params)
        except Exception as exc:  # a bug or a message nobody foresaw: drop it, stay up
            self._reject(
                pipeline,
                f"camera {camera.name}: unexpected {type(exc).__name__} while handling an image: {exc}; "
                "dropped",
                ("unexpected", index),
            )

    def _use_image(
        self,
        index: int,
        msg: Image | CompressedImage,
        pipeline: LocalizerPipeline,
        bundle: ModelBundle,
        params: LocalizerParams,
    ) -> None:
        camera = bundle.cameras[index]
        where = f"camera {camera.name} ({self.inputs[index].topic})"
        stamp_ns = ns_from_time(msg.header.stamp)
        if stamp_ns <= 0:
            self._reject(
                pipeline, f"{where}: image without a stamp (header.stamp is 0); dropped", ("stamp", index)
            )
            return
        try:
            rgb = decode_message(msg)
        except ImageDecodeError as exc:
            self._reject(pipeline, f"{where}: {exc}; dropped", ("decode", index, message_kind(str(exc))))
            return
        size = (rgb.shape[1], rgb.shape[0])
        if size != (camera.width, camera.height):
            if not params.resize_mismatched:
                self._reject(
                    pipeline,
                    f"{where}: image is {size[0]}x{size[1]}, the bundle expects "
                    f"{camera.width}x{camera.height}; dropped (set resize_mismatched: true to resize)",
                    ("size", index),
                )
                return
            if index not in self._resize_noted:
                self._resize_noted.add(index)
                self.get_logger().warn(
                    f"{where}: images are {size[0]}x{size[1]}, the bundle expects "
                    f"{camera.width}x{camera.height}; resizing them (resize_mismatched: true)"
                )
        # Resized on arrival: the set's earlier images are ready when its last one comes in.
        pipeline.add_image(index, stamp_ns, resize_to_input(rgb, bundle))

    def _reject(self, pipeline: LocalizerPipeline, message: str, kind: object) -> None:
        line = pipeline.reject_image(message, kind)
        if line is not None:
            self.get_logger().warn(line)

    def _camera_info_callback(self, index: int) -> Callable[[CameraInfo], None]:
        def callback(msg: CameraInfo) -> None:
            self._on_camera_info(index, msg)

        return callback

    def _on_camera_info(self, index: int, msg: CameraInfo) -> None:
        """The first camera_info of a camera is compared once with the bundle's intrinsics."""
        bundle, expected = self.bundle, self._expected
        if bundle is None or expected is None or index in self._info_done:
            return
        self._info_done.add(index)
        name = bundle.cameras[index].name
        try:
            problems = check_camera_info(
                name, expected[name], int(msg.width), int(msg.height), list(msg.k), msg.header.frame_id
            )
        except Exception as exc:  # a malformed message must not stop the node
            problems = [f"camera {name}: cannot check camera_info: {one_line(exc)}"]
        for problem in problems:
            self.get_logger().warn(problem)
        if not problems:
            self.get_logger().info(
                f"camera {name}: camera_info on {self.inputs[index].info_topic} matches the bundle"
            )

    # ------------------------------------------------------------------ output
    def _publish(self, result: LocalizationResult) -> None:
        params, outputs = self.params, self._outputs
        if params is None or not outputs:
            return
        pipeline = self.pipeline
        report = pipeline.uncertain_report(result) if pipeline is not None else None
        if report is not None:  # throttled by the pipeline: one line per report interval
            self.get_logger().warn(report + ("; withheld (gate_uncertain)" if params.gate_uncertain else ""))
        if result.uncertain and params.gate_uncertain:
            self._withheld += 1
            return
        frame = params.map_frame
        estimate = result.estimate
        pose = pose_stamped(estimate, result.stamp_ns, frame)
        covariance = to_convention(
            estimate.quat_xyzw, estimate.covariance * self._covariance_inflation, params.covariance_rotation
        )
        with_cov = pose_with_covariance(estimate, result.stamp_ns, frame, covariance)
        outputs["pose"].publish(pose)
        outputs["pose_cov"].publish(with_cov)
        if params.path_length > 0:
            self._path.append(pose)
        now = time.monotonic()
        # Serializing a 500-pose Path takes ~3 ms of the GIL; RViz needs it a few times a second.
        if params.path_length > 0 and now - self._path_published >= 1.0 / params.path_rate:
            self._path_published = now
            path = Path()
            path.header = pose.header
            path.poses = list(self._path)
            outputs["path"].publish(path)
        if not result.uncertain:
            self._last_confident = with_cov
            initialpose = outputs.get("initialpose")
            if initialpose is not None and self._initial_pose.on_pose(True):
                initialpose.publish(with_cov)
        if self._tf is not None:
            self._publish_tf(result, params)

    def _publish_tf(self, result: LocalizationResult, params: LocalizerParams) -> None:
        assert self._tf is not None
        try:
            self._tf.publish(
                result.estimate,
                result.stamp_ns,
                params.map_frame,
                params.base_frame,
                params.odom_frame,
                params.transform_tolerance,
            )
        except TransformUnavailable as exc:
            suppressed = self._tf_log.check(message_kind(str(exc)))
            if suppressed is not None:
                more = f" ({suppressed} more since the last report)" if suppressed else ""
                self.get_logger().warn(f"no transform published for this pose: {exc}{more}")

    def _set_initialpose_output(self, enabled: bool) -> None:
        publisher = self._outputs.pop("initialpose", None)
        if publisher is not None and not enabled:
            self.destroy_publisher(publisher)
            return
        if enabled:
            self._outputs["initialpose"] = publisher or self.create_publisher(
                PoseWithCovarianceStamped, "initialpose", OUTPUT_QOS
            )

    def _check_initialpose(self) -> None:
        publisher = self._outputs.get("initialpose")
        if publisher is None:
            return
        latest = self._last_confident
        if self._initial_pose.on_check(
            publisher.get_subscription_count(), time.monotonic(), latest is not None
        ):
            assert latest is not None
            publisher.publish(latest)

    def _engine_error(self, message: str) -> None:
        # Already throttled by the pipeline: the first failure of a kind, then one per interval.
        self.get_logger().error(message)

    def _publish_diagnostics(self) -> None:
        pipeline, publisher = self.pipeline, self._outputs.get("diagnostics")
        if pipeline is None or publisher is None:
            return
        for index in self._info_done & set(self._info_subscriptions):  # compared once: unsubscribe
            self.destroy_subscription(self._info_subscriptions.pop(index))
        snapshot = pipeline.diagnostics()
        # with uncertain_poses: what an evaluation can expect on ~/pose (estimates minus these)
        snapshot.values["withheld_poses"] = str(self._withheld)
        if self._tf is not None:
            snapshot.values["tf_published"] = str(self._tf.published)
        msg = diagnostic_array(
            snapshot, self.diagnostic_name, pipeline.engine_name, self.get_clock().now().to_msg()
        )
        publisher.publish(msg)


def _ensemble_note(samples: int, members: int, dropout: float) -> str:
    """What the S rows of an ensemble bundle are, for the configure log line."""
    note = f", {samples // members} from each of {members} ensemble models"
    if dropout == 0:  # `--ensemble-covariance heads`: each member without dropout, with its head
        return note + " (no dropout: their variance heads)"
    return note


def _make_executor() -> rclpy.executors.Executor:
    """rclpy's EventsExecutor where it exists (Jazzy and newer), else the single-threaded one.

    The events executor dispatches a callback without rebuilding a wait set in Python each time,
    which is most of the per-message overhead of a 4-camera node at 30 Hz.
    """
    try:
        from rclpy.experimental.events_executor import EventsExecutor
    except ImportError:  # Humble (the Jetson image): no events executor
        return rclpy.executors.SingleThreadedExecutor()
    return EventsExecutor()


def _fail(message: str) -> int:
    rclpy.logging.get_logger(NODE_NAME).error("cannot configure: " + message)
    rclpy.utilities.try_shutdown()
    return 1


def main(args: Sequence[str] | None = None) -> int:
    """Entry point of `ros2 run pose_regressor localizer`.

    Exit codes: 0 after a shutdown transition or a signal, 1 when the autostart configure fails
    or the command line / params file cannot be used (one `cannot configure:` line).
    """
    progress = _Progress()
    try:
        return _run(args, progress)
    except KeyboardInterrupt:
        # A SIGINT surfaces at whatever Python line runs when it lands; while the node starts
        # that may be inside an error path the signal itself caused (rclpy's handler shuts the
        # context down, and the next rcl call fails). One line, as for any start-up interruption.
        if not progress.spinning:
            print(INTERRUPTED_WHILE_STARTING, file=sys.stderr)
        rclpy.utilities.try_shutdown()
        return 0


@dataclass
class _Progress:
    # configured and active, or handed to a lifecycle manager: from then on a signal ends it quietly
    spinning: bool = False


def _signalled() -> bool:
    """A signal ended the start: rclpy's SIGINT/SIGTERM handler shuts the default context down,
    so whatever rcl call followed failed for that reason, not for its own."""
    return not rclpy.utilities.ok()


def _interrupted() -> int:
    print(INTERRUPTED_WHILE_STARTING, file=sys.stderr)
    rclpy.utilities.try_shutdown()
    return 0


def _run(args: Sequence[str] | None, progress: _Progress) -> int:
    try:
        rclpy.init(args=list(args) if args is not None else None)
    except KeyboardInterrupt:  # launch's SIGINT, or a Ctrl-C, before the node exists
        return _interrupted()
    except Exception as exc:  # an unreadable params file or a bad --ros-args argument
        print(f"[ERROR] [{NODE_NAME}]: cannot configure: {one_line(exc)}", file=sys.stderr)
        return 1
    quiet_codec_logs()  # corrupt images are counted and logged by the node, throttled
    try:
        node = LocalizerNode()
    except KeyboardInterrupt:  # creating the node's services imports their types: ~0.1 s
        return _interrupted()
    except Exception as exc:  # a --ros-args override of the wrong type or out of range
        return _interrupted() if _signalled() else _fail(one_line(exc))
    executor: rclpy.executors.Executor | None = None
    code = 0
    try:
        if node.autostart and not _start(node):
            if _signalled():
                return _interrupted()
            code = 1  # on_configure logged the one-line reason
        if code == 0:
            # Made only here: a node that failed to configure never spins, and the events
            # executor installs SIGINT/SIGTERM handlers and a shutdown callback of its own.
            executor = _make_executor()
            executor.add_node(node)
            progress.spinning = True
            # spin_once in a loop, not spin(): the events executor's spin() does not return on SIGINT.
            while rclpy.utilities.ok() and not node.finished:
                executor.spin_once(timeout_sec=0.2)
            if node.finished:  # let the shutdown request's response reach the caller
                deadline = time.monotonic() + 0.5
                while rclpy.utilities.ok() and time.monotonic() < deadline:
                    executor.spin_once(timeout_sec=0.05)
    except (KeyboardInterrupt, rclpy.executors.ExternalShutdownException):
        if not progress.spinning:
            print(INTERRUPTED_WHILE_STARTING, file=sys.stderr)
    finally:
        with teardown_watchdog():
            _tear_down(node, executor)
            # inside the watch too: the last references run the executor's C++ destructor
            del node, executor
    return code


def _start(node: LocalizerNode) -> bool:
    """Configure and activate (autostart); False when either fails. A transition that a signal
    interrupted fails in rcl (the context is gone) rather than in the callback: that too is False."""
    try:
        if node.trigger_configure() != TransitionCallbackReturn.SUCCESS:
            return False
        node.trigger_activate()
    except Exception:
        if not _signalled():
            raise
        return False
    return True


def _tear_down(node: LocalizerNode, executor: rclpy.executors.Executor | None) -> None:
    """Stop inference, destroy the node (with the process's last node, its DDS participant) and
    shut rclpy down."""
    if node.pipeline is not None:
        node.pipeline.stop()
    if executor is not None:
        executor.shutdown()
    node.destroy_node()
    rclpy.utilities.try_shutdown()  # a signal may have shut the context down already


if __name__ == "__main__":
    sys.exit(main())
