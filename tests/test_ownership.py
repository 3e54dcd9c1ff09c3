"""One owner per profile: refuse a second owner, never kill it, free the lock when the owner dies."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from gateway_core.ownership import ProfileBusy, ProfileLock, read_owner

from .support import present


def test_second_owner_is_refused_and_told_who_owns(tmp_path: Path) -> None:
    path = tmp_path / "p.lock"
    first = ProfileLock(path, "p")
    info = first.acquire("console")
    assert read_owner(path) == info
    with pytest.raises(ProfileBusy) as busy:
        ProfileLock(path, "p").acquire("headless")
    assert busy.value.holder is not None
    assert busy.value.holder.pid == os.getpid()
    assert f"PID {os.getpid()} (console" in str(busy.value) and "never kills" in str(busy.value)
    first.release()
    assert read_owner(path) is None
    second = ProfileLock(path, "p")
    assert second.acquire("headless").owner == "headless"
    second.release()


@pytest.mark.process
def test_dead_owner_frees_the_profile_by_itself(tmp_path: Path) -> None:
    path = tmp_path / "p.lock"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
            import sys
            from gateway_core.ownership import ProfileLock
            ProfileLock(__import__('pathlib').Path({str(path)!r}), 'p').acquire('headless')
            print('locked', flush=True)
            sys.stdin.read()
        """),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "locked"
        assert present(read_owner(path)).pid == holder.pid
        with pytest.raises(ProfileBusy):
            ProfileLock(path, "p").acquire("console")
    finally:
        holder.kill()
        holder.wait(10)
    # The JSON is still there, but its writer is gone: nobody owns the profile.
    assert read_owner(path) is None
    lock = ProfileLock(path, "p")
    assert lock.acquire("console").pid == os.getpid()
    lock.release()


def test_an_app_lock_lives_apart_from_the_profiles_and_no_app_id_walks_out(tmp_path: Path) -> None:
    from gateway_core.ownership import app_lock_file

    run = tmp_path / "run"
    assert app_lock_file(run, "cli_a1b2c3") == run / "apps" / "cli_a1b2c3.lock"
    for hostile in ("../../etc/passwd", "..", "a/b", ""):
        path = app_lock_file(run, hostile)
        assert path.parent == run / "apps" and path.name.endswith(".lock") and "/" not in path.name
        assert path.name not in ("..lock", "...lock")
