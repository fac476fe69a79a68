"""Models by name: what a recipe's ``model.name`` and an export's recorded model resolve to.

The models themselves live with their tasks (``growprune/tasks/<task>/``: the MLP, CNN and
ResNets with classification, the Transformer with translation, SSD with detection, PointNet++
with part segmentation), written in plain ``torch.nn`` with no device assumptions. Build them by
name with :func:`build_model`; :func:`register_model` adds your own.
"""

from growprune.models.registry import build_model, list_models, model_builder, register_model

__all__ = ["build_model", "list_models", "model_builder", "register_model"]
