"""`TorchEngine`: the bundle's model in eager PyTorch, the reference the exported graph is tested against.

How it gets the model: `pose-train export` writes BUNDLE/model.pt next to model.onnx, holding
the same weights as a state dict plus the checkpoint's model config (loaded with
`weights_only=True`, so no pickled code runs), and this engine rebuilds `PoseRegressor`.
Converting model.onnx back to PyTorch (onnx2torch) was not chosen: it would add a dependency and
test the converter rather than our model.

It lives in the training distribution because it needs torch and the training model; the robot
package never imports it. It registers itself as the ``torch`` backend of
`pose_regressor.engines.load_engine` through the ``pose_regressor.engines`` entry point group
(training/pyproject.toml), so ``load_engine(bundle, "torch")`` works wherever this package is
installed.

It runs exactly what the graph was traced from (`inference_outputs` in eval mode, on uint8 images
converted to float / 255), so ONNX Runtime and TensorRT agree with it to float
precision on the same images and masks.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from pose_regressor.bundle import ModelBundle
from pose_regressor.engines.base import (
    EngineDescription,
    EngineError,
    EngineUnavailableError,
    InferenceEngine,
)
from pose_regressor_training.checkpoint import unreadable_torch_file
from pose_regressor_training.ensemble import EnsembleRegressor
from pose_regressor_training.models import ModelConfig, PoseRegressor, build_model
from pose_regressor_training.models.config import COVARIANCES as ENSEMBLE_COVARIANCES
from pose_regressor_training.models.model import images_to_unit_float
from pose_regressor_training.typed_config import from_mapping

#: The "format" field of BUNDLE/model.pt (written by `pose_regressor_training.export`).
WEIGHTS_FORMAT = "pose_regressor_bundle_weights"


class TorchEngine(InferenceEngine):
    """The bundle's PyTorch weights (model.pt) on `device` ("cpu", "cuda", "cuda:1", ...), fp32."""

    backend = "torch"

    def __init__(self, bundle: ModelBundle, device: str = "cpu") -> None:
        super().__init__(bundle)
        path = bundle.torch_path
        if not path.is_file():
            raise EngineError(f"{bundle.path} has no {path.name} (export the bundle with pose-train export)")
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise EngineUnavailableError(f"device {device!r} requested but torch sees no CUDA GPU")
        try:
            payload = torch.load(path, map_location=device, weights_only=True)
        except Exception as exc:  # truncated or foreign files raise many types
            raise EngineError(f"cannot read {path}: {unreadable_torch_file(path, exc)}") from None
        if not isinstance(payload, dict) or payload.get("format") != WEIGHTS_FORMAT:
            raise EngineError(f"{path} is not a pose_regressor bundle weights file")
        member_config = replace(from_mapping(ModelConfig, payload["model_config"]), pretrained=False)
        members = payload.get("ensemble_members", 1)
        rows = members if members > 1 else member_config.heads  # a model of heads: one row per head
        if rows != bundle.ensemble_members:
            raise EngineError(
                f"{path} holds {members} model(s) of {member_config.heads} head(s), bundle.yaml: "
                f"ensemble_members {bundle.ensemble_members}"
            )
        covariance = payload.get("ensemble_covariance", ENSEMBLE_COVARIANCES[0])
        if covariance not in ENSEMBLE_COVARIANCES:
            raise EngineError(f"{path}: ensemble_covariance {covariance!r} is none of {ENSEMBLE_COVARIANCES}")
        model: PoseRegressor | EnsembleRegressor = (
            EnsembleRegressor([build_model(member_config) for _ in range(members)], covariance)
            if members > 1
            else build_model(member_config)
        )
        config = model.config
        expected = (
            bundle.num_cameras,
            bundle.input_height,
            bundle.input_width,
            bundle.hidden_dim,
            bundle.variance_head,
            bundle.shift_variance,
        )
        actual = (
            config.num_cameras,
            config.image_height,
            config.image_width,
            model.mask_dim,
            config.variance_head,
            config.shift_variance,
        )
        if actual != expected:
            raise EngineError(
                f"{path} holds a model for (cameras, height, width, D, variance head, shift variance) = "
                f"{actual}, "
                f"bundle.yaml says {expected}"
            )
        model.load_state_dict(payload["model"])
        self.model = model.eval().to(device)
        self.device = torch.device(device)

    def _infer(
        self, images: NDArray[np.uint8], masks: NDArray[np.float32]
    ) -> tuple[NDArray[np.floating[Any]], ...]:
        with torch.inference_mode():
            x = torch.from_numpy(np.array(images, copy=True)).to(self.device)
            m = torch.from_numpy(np.array(masks, copy=True)).to(self.device)
            outputs = self.model.inference_outputs(images_to_unit_float(x.unsqueeze(0)), m.unsqueeze(0))
            return tuple(out[0].double().cpu().numpy() for out in outputs if out is not None)

    def describe(self) -> EngineDescription:
        return EngineDescription(
            backend=self.backend,
            device=self.device.type,
            precision="fp32",
            details={"torch": torch.__version__, "weights": str(self.bundle.torch_path)},
        )
