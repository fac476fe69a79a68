"""Minimal stand-in for torchvision: just what rigl-torch 0.5.2 touches (see ../README.md)."""

from . import models

__all__ = ["models"]
