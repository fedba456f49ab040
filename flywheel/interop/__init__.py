"""Interoperability with other robot-learning data formats (LeRobotDataset v3.0).

The submodules import lerobot (and torch); import them where needed, not at CLI start-up.
"""
