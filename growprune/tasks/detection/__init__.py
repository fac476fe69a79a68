"""Object detection on COCO-format folders (and a generated set in that format): SSD, multibox loss, COCO mAP.

Declared to the task registry (growprune/tasks/registry.py); nothing outside this folder
imports from it except through that registry.
"""
