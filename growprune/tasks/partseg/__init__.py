"""3-D part segmentation, ShapeNet-Part layout (and a generated stand-in): PointNet++, mIoU.

Declared to the task registry (growprune/tasks/registry.py); nothing outside this folder
imports from it except through that registry.
"""
