"""The `localizer` ROS 2 node: a thin lifecycle shell around `LocalizerPipeline`.

on_configure: read and validate parameters, load the bundle and the engine, create publishers.
on_activate:  subscribe to the camera topics (sensor-data QoS), start the worker and diagnostics.
With `autostart` (the default for `main`), the node configures and activates itself.

Publishes (stamped with the input set's stamp, frame `map_frame`, reliable QoS):
  ~/pose (PoseStamped), ~/pose_with_covariance (PoseWithCovarianceStamped), ~/path (Path),
  /diagnostics (DiagnosticArray, 1 Hz), and optionally /initialpose (first confident pose).
"""

from __future__ import annotations

import math
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import rclpy
import rclpy.executors
import rclpy.logging
import rclpy.utilities
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseStamped, PoseWithCovarianceStamped
from nav_msgs.msg import Path
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.exceptions import ParameterException
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CompressedImage, Image

from pose_regressor.bundle import BundleError, ModelBundle, load_bundle, preprocess, resize_to_input
from pose_regressor.engines import load_engine
from pose_regressor.image_decode import ImageDecodeError, decode_message, quiet_codec_logs
from pose_regressor.messages import diagnostic_array, ns_from_time, pose_stamped, pose_with_covariance
from pose_regressor.params import PARAMETERS, LocalizerParams, ParameterError
from pose_regressor.pipeline import LocalizationResult, LocalizerPipeline, PipelineConfig, message_kind

NODE_NAME = "localizer"
DIAGNOSTIC_NAME = "pose_regressor: localizer"
OUTPUT_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)


class ConfigurationError(RuntimeError):
    """The node cannot start with these parameters or this bundle (one clear line)."""


def _descriptor(spec: Any) -> ParameterDescriptor:
    descriptor = ParameterDescriptor(description=spec.description)
    if spec.choices:
        descriptor.additional_constraints = "one of: " + ", ".join(spec.choices)
    if spec.min_value is not None and not isinstance(spec.default, bool):
        if isinstance(spec.default, int):
            descriptor.integer_range = [
                IntegerRange(from_value=int(spec.min_value), to_value=int(spec.max_value))
            ]
        elif isinstance(spec.default, float):
            descriptor.floating_point_range = [
                FloatingPointRange(from_value=float(spec.min_value), to_value=float(spec.max_value))
            ]
    return descriptor


class LocalizerNode(LifecycleNode):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(NODE_NAME, **kwargs)
        for spec in PARAMETERS:
            self.declare_parameter(spec.name, spec.default, _descriptor(spec))
        self.params: LocalizerParams | None = None
        self.bundle: ModelBundle | None = None
        self.pipeline: LocalizerPipeline | None = None
        self._image_subscriptions: list[Any] = []
        self._outputs: dict[str, Any] = {}
        self._path: deque[PoseStamped] = deque()
        self._diag_timer: Any = None
        self._initialpose_sent = False
        self._path_published = -math.inf  # monotonic seconds of the last ~/path
        self._topics: tuple[str, ...] = ()
        self._resize_noted: set[int] = set()  # cameras whose size mismatch was logged

    # ------------------------------------------------------------------ lifecycle
    def configure_pipeline(self) -> None:
        """Everything on_configure does; raises ConfigurationError with one clear line."""
        values = {spec.name: self.get_parameter(spec.name).value for spec in PARAMETERS}
        try:
            params = LocalizerParams.from_values(values)
            bundle = load_bundle(params.bundle)
        except (ParameterError, BundleError) as exc:
            raise ConfigurationError(str(exc)) from exc
        topics = params.camera_topics or tuple(camera.topic for camera in bundle.cameras)
        if len(topics) != bundle.num_cameras:
            raise ConfigurationError(
                f"camera_topics has {len(topics)} topic(s) but the bundle expects {bundle.num_cameras} "
                f"camera(s) in this order: {', '.join(bundle.camera_names)}"
            )
        try:
            engine = load_engine(bundle, params.backend)
        except Exception as exc:  # engines raise many types (missing providers, bad graphs)
            raise ConfigurationError(
                f"cannot load the {params.backend} engine for {bundle.path}: {exc}"
            ) from exc
        description = engine.describe()
        config = PipelineConfig(
            camera_names=tuple(bundle.camera_names),
            hidden_dim=bundle.hidden_dim,
            dropout=bundle.dropout,
            covariance_scale=bundle.covariance_scale,
            sync_slop_s=params.sync_slop,
            mc_samples=params.mc_samples,
            seed=params.seed,
            max_position_std=params.max_position_std,
            max_rotation_std=params.max_rotation_std,
            camera_timeout_s=params.camera_timeout,
        )
        buffer = np.empty(bundle.images_shape, dtype=np.uint8)  # reused for every set
        self.pipeline = LocalizerPipeline(
            config,
            engine,
            self._publish,
            self._engine_error,
            engine_name=f"{description.backend} {description.device} {description.precision}",
            prepare=lambda images: preprocess(images, bundle, out=buffer),
        )
        self.params = params
        self._topics = topics
        self.bundle = bundle
        self.get_logger().info(
            f"bundle {bundle.path}: cameras {', '.join(bundle.camera_names)} on {', '.join(topics)}; "
            f"engine {description}; {params.mc_samples} MC samples"
        )

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            self.configure_pipeline()
        except (ConfigurationError, OSError) as exc:
            # One line, whatever the cause wrote (ONNX Runtime messages may span lines).
            self.get_logger().error("cannot configure: " + " ".join(str(exc).split()))
            return TransitionCallbackReturn.FAILURE
        assert self.params is not None
        self._outputs = {
            "pose": self.create_publisher(PoseStamped, "~/pose", OUTPUT_QOS),
            "pose_cov": self.create_publisher(
                PoseWithCovarianceStamped, "~/pose_with_covariance", OUTPUT_QOS
            ),
            "path": self.create_publisher(Path, "~/path", OUTPUT_QOS),
            "diagnostics": self.create_publisher(DiagnosticArray, "/diagnostics", OUTPUT_QOS),
        }
        if self.params.publish_initialpose:
            self._outputs["initialpose"] = self.create_publisher(
                PoseWithCovarianceStamped, "/initialpose", OUTPUT_QOS
            )
        self._path = deque(maxlen=max(self.params.path_length, 1))
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        assert self.pipeline is not None and self.params is not None
        for index, topic in enumerate(self._topics):
            compressed = self.params.transport_for(index) == "compressed" or topic.endswith("/compressed")
            msg_type = CompressedImage if compressed else Image
            self._image_subscriptions.append(
                self.create_subscription(
                    msg_type, topic, self._image_callback(index), qos_profile_sensor_data
                )
            )
        self.pipeline.start()
        self._diag_timer = self.create_timer(1.0, self._publish_diagnostics)
        self.get_logger().info("active: localizing")
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        for subscription in self._image_subscriptions:
            self.destroy_subscription(subscription)
        self._image_subscriptions = []
        if self._diag_timer is not None:
            self.destroy_timer(self._diag_timer)
            self._diag_timer = None
        if self.pipeline is not None:
            self.pipeline.stop()
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        for publisher in self._outputs.values():
            self.destroy_publisher(publisher)
        self._outputs = {}
        self.pipeline = None
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        if self.pipeline is not None:
            self.pipeline.stop()
        return TransitionCallbackReturn.SUCCESS

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
        where = f"camera {camera.name} ({self._topics[index]})"
        stamp_ns = ns_from_time(msg.header.stamp)
        if stamp_ns <= 0:
            self._reject(f"{where}: image without a stamp (header.stamp is 0); dropped", ("stamp", index))
            return
        try:
            rgb = decode_message(msg)
        except ImageDecodeError as exc:
            self._reject(f"{where}: {exc}; dropped", ("decode", index, message_kind(str(exc))))
            return
        size = (rgb.shape[1], rgb.shape[0])
        if size != (camera.width, camera.height):
            if not params.resize_mismatched:
                self._reject(
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

    def _reject(self, message: str, kind: object) -> None:
        assert self.pipeline is not None
        line = self.pipeline.reject_image(message, kind)
        if line is not None:
            self.get_logger().warn(line)

    # ------------------------------------------------------------------ output
    def _publish(self, result: LocalizationResult) -> None:
        params = self.params
        if params is None or not self._outputs:
            return
        if result.uncertain and params.gate_uncertain:
            return
        frame = params.map_frame
        pose = pose_stamped(result.estimate, result.stamp_ns, frame)
        with_cov = pose_with_covariance(result.estimate, result.stamp_ns, frame)
        self._outputs["pose"].publish(pose)
        self._outputs["pose_cov"].publish(with_cov)
        if params.path_length > 0:
            self._path.append(pose)
        now = time.monotonic()
        # Serializing a 500-pose Path takes ~3 ms of the GIL; RViz needs it a few times a second.
        if params.path_length > 0 and now - self._path_published >= 1.0 / params.path_rate:
            self._path_published = now
            path = Path()
            path.header = pose.header
            path.poses = list(self._path)
            self._outputs["path"].publish(path)
        if "initialpose" in self._outputs and not result.uncertain and not self._initialpose_sent:
            self._outputs["initialpose"].publish(with_cov)
            self._initialpose_sent = True

    def _engine_error(self, message: str) -> None:
        # Already throttled by the pipeline: the first failure of a kind, then one per interval.
        self.get_logger().error(message)

    def _publish_diagnostics(self) -> None:
        if self.pipeline is None or "diagnostics" not in self._outputs:
            return
        snapshot = self.pipeline.diagnostics()
        msg = diagnostic_array(
            snapshot, DIAGNOSTIC_NAME, self.pipeline.engine_name, self.get_clock().now().to_msg()
        )
        self._outputs["diagnostics"].publish(msg)


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


def main(args: Sequence[str] | None = None) -> int:
    """Entry point of `ros2 run pose_regressor localizer` (configures and activates itself)."""
    rclpy.init(args=list(args) if args is not None else None)
    quiet_codec_logs()  # corrupt images are counted and logged by the node, throttled
    try:
        node = LocalizerNode()
    except ParameterException as exc:  # a --ros-args override of the wrong type or out of range
        rclpy.logging.get_logger(NODE_NAME).error(f"cannot configure: {exc}")
        if rclpy.utilities.ok():
            rclpy.shutdown()
        return 1
    code = 0
    try:
        if node.trigger_configure() != TransitionCallbackReturn.SUCCESS:
            code = 1  # on_configure logged the one-line reason
        else:
            node.trigger_activate()
            executor = _make_executor()
            executor.add_node(node)
            # spin_once in a loop, not spin(): the events executor's spin() does not return on SIGINT.
            while rclpy.utilities.ok():
                executor.spin_once(timeout_sec=0.2)
    except KeyboardInterrupt:
        pass
    except rclpy.executors.ExternalShutdownException:
        pass
    finally:
        if node.pipeline is not None:
            node.pipeline.stop()
        node.destroy_node()
        if rclpy.utilities.ok():
            rclpy.shutdown()
    return code


if __name__ == "__main__":
    sys.exit(main())
