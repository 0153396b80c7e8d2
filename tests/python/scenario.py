"""The pass/fail bookkeeping every client scenario shares: `check` stops at the first failure
(exit status 1, with the detail), `done` prints the count."""

import sys

_passed = 0


def check(name, cond, detail=""):
    """Records one check; a failed one ends the scenario with exit status 1."""
    global _passed
    if not cond:
        print(f"FAIL {name}: {detail}")
        sys.exit(1)
    _passed += 1
    print(f"ok   {name}")


def done():
    """Prints the summary line the test runner's log shows."""
    print(f"{_passed} passed, 0 failed")
