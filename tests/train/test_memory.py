"""Peak memory as a run reports it: the meter sees what training adds, the report shows it."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from growprune.train.memory import MIB, PeakMemory, process_peak_rss

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="getrusage is POSIX")


MEASURE = """
import json, torch
from growprune.train.memory import MIB, PeakMemoryMeter
meter = PeakMemoryMeter(torch.device("cpu"))
before = meter.read()
block = torch.ones(256 * MIB // 4)  # touched, so resident
after = meter.read()
print(json.dumps([before.__dict__, after.__dict__]))
"""


def test_meter_counts_what_was_allocated_after_it_started() -> None:
    """In a fresh process: the peak RSS is a high-water mark, so in a long-lived one (a test
    session that once held more) a new allocation may not raise it at all."""
    command = [sys.executable, "-c", MEASURE]
    out = subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)
    before, after = (PeakMemory(**fields) for fields in json.loads(out.stdout))
    assert before.cuda_mib is None and after.cuda_mib is None
    assert after.rss_above_start_mib is not None and before.rss_above_start_mib is not None
    # at least most of the 256 MiB block (the allocator may reuse a little freed memory)
    assert after.rss_above_start_mib - before.rss_above_start_mib >= 0.75 * 256
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
