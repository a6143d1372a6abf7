"""Fault injection for the crash/resume tests, and the step counters they aim with.

COOKBOOK_CRASH_AT_STEP=N    SIGKILL this process when any loop finishes its step N
COOKBOOK_CRASH_AT_CALL=N    SIGKILL at the N-th finished step counted over the whole process (across variants)
COOKBOOK_CRASH_IN_SAVE=N    SIGKILL in the N-th checkpoint save, after the write, before the rename
COOKBOOK_INTERRUPT_AT_CALL=N  SIGINT, as a user's Ctrl-C, at the N-th finished step over the whole process
Unset, they cost one integer comparison per step.
"""

from __future__ import annotations

import os
import signal

CRASH_AT_STEP = int(os.environ.get("COOKBOOK_CRASH_AT_STEP", "0"))
CRASH_AT_CALL = int(os.environ.get("COOKBOOK_CRASH_AT_CALL", "0"))
CRASH_IN_SAVE = int(os.environ.get("COOKBOOK_CRASH_IN_SAVE", "0"))
INTERRUPT_AT_CALL = int(os.environ.get("COOKBOOK_INTERRUPT_AT_CALL", "0"))
CALLS = 0  # steps finished in this process, over every loop
SAVES = 0  # checkpoint saves in this process
LAST_STEP = 0  # the step last finished (or restored) by any loop: names the step in error messages


def step_finished(step: int) -> None:
    global CALLS, LAST_STEP
    CALLS += 1
    LAST_STEP = step
    if (CRASH_AT_STEP and step == CRASH_AT_STEP) or (CRASH_AT_CALL and CALLS == CRASH_AT_CALL):
        os.kill(os.getpid(), signal.SIGKILL)
    if INTERRUPT_AT_CALL and CALLS == INTERRUPT_AT_CALL:
        os.kill(os.getpid(), signal.SIGINT)


def before_replace() -> None:
    """Called by every checkpoint save between writing the new file and renaming it over the old one."""
    global SAVES
    SAVES += 1
    if CRASH_IN_SAVE and SAVES == CRASH_IN_SAVE:
        os.kill(os.getpid(), signal.SIGKILL)
