"""Peak memory as a run reports it: the meter sees what training adds, the report shows it."""

from __future__ import annotations

import sys

import pytest
import torch

from growprune.train.memory import MIB, PeakMemory, PeakMemoryMeter, process_peak_rss

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="getrusage is POSIX")


def test_meter_counts_what_was_allocated_after_it_started() -> None:
    meter = PeakMemoryMeter(torch.device("cpu"))
    before = meter.read()
    size = 256 * MIB
    block = torch.ones(size // 4, dtype=torch.float32)  # touched, so resident
    after = meter.read()
    del block
    assert before.cuda_mib is None and after.cuda_mib is None
    assert after.rss_above_start_mib is not None and before.rss_above_start_mib is not None
    # at least most of the block (the allocator may reuse a little freed memory)
    assert after.rss_above_start_mib - before.rss_above_start_mib >= 0.75 * size / MIB
    assert after.rss_mib is not None and after.rss_mib >= after.rss_above_start_mib


def test_peak_never_goes_down() -> None:
    first = process_peak_rss()
    block = torch.ones(64 * MIB // 4)
    del block
    second = process_peak_rss()
    assert first is not None and second is not None and second >= first


def test_record_fields_name_the_final_record_fields() -> None:
    from dataclasses import fields

    from growprune.records import FinalRecord

    names = {f.name for f in fields(FinalRecord)}
    assert set(PeakMemory(1.0, 0.5, None).record_fields()) <= names
