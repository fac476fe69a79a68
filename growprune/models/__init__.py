"""Models written for growprune (torchvision does not run beside the CPU torch build)."""
