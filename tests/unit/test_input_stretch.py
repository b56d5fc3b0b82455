"""`fit` warns when the model input stretches the cameras' images (a portrait phone video into the
landscape default): every image would be, on the robot too."""

from __future__ import annotations

from pose_regressor.rig import PinholeIntrinsics, preset_rig
from pose_regressor_training.data.benchmark import single_camera_rig
from pose_regressor_training.training_data import stretch_warning


def test_a_portrait_camera_into_a_landscape_input_is_named_with_a_size_that_fits() -> None:
    portrait = single_camera_rig(PinholeIntrinsics(1080, 1920, 1375.5, 1374.5, 554.6, 965.3))
    assert stretch_warning(portrait, (128, 96)) == (
        "fit: warning: camera 'camera' is 1080x1920 but the model input is 128x96, so every image is "
        "stretched 2.37x in width; model.image_width=80 model.image_height=144 keeps its shape at about "
        "the same pixel count"
    )
    assert stretch_warning(portrait, (80, 144)) is None  # 0.556 against 0.5625
    wide = single_camera_rig(PinholeIntrinsics(1280, 720, 500, 500, 640, 360))  # 16:9 video, 4:3 input
    assert "stretched 1.33x in height; model.image_width=144 model.image_height=80" in str(
        stretch_warning(wide, (128, 96))
    )


def test_the_default_configs_keep_the_cameras_shape() -> None:
    assert stretch_warning(preset_rig("quad", 128, 96), (64, 48)) is None
    assert stretch_warning(preset_rig("mono", 640, 480), (128, 96)) is None
