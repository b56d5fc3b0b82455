"""`pose-train import`: camera poses from other tools into our dataset folder (`data/folder.py`).

Each reader (`colmap`, `nerfstudio`, `tum`) turns its files into a `CameraTrack`: one pinhole
camera (the file's intrinsics, distortion recorded where the file has it) and, per image, the
camera's pose ``T_map_cam`` in the optical frame (x right, y down, z forward). `writer` scales
the poses, cuts the frames into train/val/test blocks and writes the folder of a one-camera rig.
"""
