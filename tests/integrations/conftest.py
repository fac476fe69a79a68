"""Fixtures and shared settings for the framework integration tests."""

from typing import Any

from tests.single_thread import single_thread  # noqa: F401  (autouse fixture)

# pl.Trainer arguments for a one-process CPU fit that writes and prints nothing of its own
QUIET_CPU_TRAINER: dict[str, Any] = {
    "accelerator": "cpu",
    "devices": 1,
    "logger": False,
    "enable_checkpointing": False,
    "enable_progress_bar": False,
    "enable_model_summary": False,
}
