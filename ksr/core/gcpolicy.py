"""Garbage-collector settings for a serving process.

A proxy keeps each finished transaction for its wait time (tm's ``wt_timer``, 5 s), so at
1,000 calls/s about 10,000 transactions are alive at any moment. With Python's default
thresholds (700, 10, 10) the collector moved them up generation by generation and ran a full
pass over the whole heap every second or so: measured with bench/profile_calls.py, over half
of the CPU per call went to the collector. Transactions free themselves by reference counting
(tm breaks their cycles when it destroys them), so full passes find next to nothing: they can
be rare, and young collections can wait for more allocations.
"""

from __future__ import annotations

import gc

GEN1_EVERY = 10  # young collections per middle-generation collection (Python's default)
FULL_EVERY = 100  # middle-generation collections per full pass (Python's default is 10)


def tune_for_serving(young_threshold: int) -> None:
    """Apply ``core.gc_threshold`` (0 keeps Python's defaults) to this process, and freeze
    what start-up made (modules, the script's runtime, configuration: ~100,000 objects that live
    as long as the process) so that no full pass walks them again."""
    if young_threshold <= 0:
        return
    gc.set_threshold(young_threshold, GEN1_EVERY, FULL_EVERY)
    gc.collect()
    gc.freeze()
