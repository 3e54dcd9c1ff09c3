"""`gatewatch access list|approve|revoke`: through the gateway serving the profile, else on its journal.

Approvals live in the profile's journal, which belongs to whoever holds the profile's lock. So this
first tries to take the lock itself (owner kind `cli`, for the moment it takes): when it gets it,
nobody serves the profile and the journal is changed directly; when the profile is busy, the
owner is asked over its control socket (the same peer-uid rule as every op). Either way the same
`access.perform` does the work, and bad input is one line (AccessError / ControlError).
"""

from __future__ import annotations

from typing import Any

from .access import AccessError, perform
from .config import Home, load_profile
from .control import ControlError, request
from .journal import Journal, JournalError
from .ownership import ProfileBusy, ProfileLock

CONTROL_TIMEOUT = 5.0

__all__ = ["AccessError", "ControlError", "administer"]


def administer(home: Home, name: str, op: str, argument: str | None = None) -> dict[str, Any]:
    """Do one access operation on profile `name`; AccessError or ControlError with one line if it cannot."""
    profile = load_profile(home, name, require_secrets=False)
    home.ensure_dirs()
    lock = ProfileLock(home.lock_file(name), name)
    try:
        lock.acquire("cli")
    except ProfileBusy:
        response = request(home.socket_file(name), f"access_{op}", CONTROL_TIMEOUT, argument=argument)
        return {k: v for k, v in response.items() if k not in ("ok", "v")}
    try:
        try:
            journal = Journal(home.state_file(name))
        except JournalError as exc:
            raise AccessError(str(exc)) from None
        try:
            return perform(journal, profile.access, op, argument)
        except JournalError as exc:
            raise AccessError(str(exc)) from None
        finally:
            journal.close()
    finally:
        lock.release()
