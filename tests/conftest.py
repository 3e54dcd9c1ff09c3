import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import lark_oapi  # noqa: F401  (3.7 s to import: paid once per worker here, never inside a test's deadline)
import pytest

from gateway_core.config import Home, Profile, load_profile
from gateway_core.gateway import Gateway
from gateway_core.sim import Simulators

if TYPE_CHECKING:
    from tui.app import ConsoleApp

from .sim.launchctl_harness import LaunchctlSim, simulated_launchctl
from .sim.systemctl_harness import SystemctlSim, simulated_systemctl
from .support import (
    FEISHU_SECRET,
    FEISHU_SECRET_ENV,
    LLM_KEY,
    LLM_KEY_ENV,
    connected_gateway,
    unique_app_id,
    write_profile,
)


@pytest.fixture(autouse=True)
def _loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


@pytest.fixture(autouse=True)
def _service_manager_named(monkeypatch: pytest.MonkeyPatch) -> None:
    """The console's `t`/`h` use this machine's manager; tests name theirs (the systemctl simulator
    switches to systemd), so the suite means the same on a Mac and on Linux."""
    monkeypatch.setenv("GATEWATCH_SERVICE_MANAGER", "launchd")


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A fresh directory with a short path, for anything that holds a control socket.

    A Unix socket's path must fit in 104 bytes on macOS (108 on Linux), and pytest's tmp_path
    under macOS's per-user temporary directory is longer than that before the socket's own name.
    """
    path = Path(tempfile.mkdtemp(prefix="gw-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def home(short_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> Home:
    monkeypatch.setenv("GATEWATCH_HOME", str(short_tmp / "home"))
    monkeypatch.setenv(FEISHU_SECRET_ENV, FEISHU_SECRET)
    monkeypatch.setenv(LLM_KEY_ENV, LLM_KEY)
    home = Home(short_tmp / "home")
    home.ensure_dirs()
    return home


@pytest.fixture
def sims() -> Iterator[Simulators]:
    with Simulators(
        feishu={"app_id": unique_app_id(), "app_secret": FEISHU_SECRET},
        llm={"api_key": LLM_KEY},
    ) as running:
        yield running


@pytest.fixture
def profile(home: Home, sims: Simulators) -> Profile:
    write_profile(home, "p", sims)
    return load_profile(home, "p")


@pytest.fixture
async def gateway(home: Home, profile: Profile, sims: Simulators) -> AsyncIterator[Gateway]:
    """An in-process gateway (owner: console) connected to the simulators."""
    async with connected_gateway(home, profile) as gw:
        yield gw


@pytest.fixture
def launchctl_sim(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LaunchctlSim]:
    """A launchctl simulator first on PATH, running real processes; its jobs die with the test."""
    with simulated_launchctl(tmp_path / "sim", monkeypatch.setenv) as simulator:
        yield simulator


@pytest.fixture
def systemctl_sim(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SystemctlSim]:
    """A `systemctl --user`/`loginctl` simulator first on PATH, running real processes; its units
    die with the test. Linger is on, as a server set up for gatewatch has it."""
    with simulated_systemctl(tmp_path / "systemd-sim", monkeypatch.setenv) as simulator:
        yield simulator


@pytest.fixture
def console(home: Home, profile: Profile, sims: Simulators) -> Iterator["ConsoleApp"]:
    """A console app around an unstarted gateway; the app starts it, as `gatewatch` does."""
    from types import SimpleNamespace

    from gateway_core.ownership import read_owner
    from tui.app import ConsoleApp
    from tui.demo import demo_faults
    from tui.source import LocalSource

    gateway = Gateway(profile, home, owner="console", log_to_file=False)
    faults = demo_faults(SimpleNamespace(sims=sims, gateway=gateway))  # the demo's menu, on these parts
    app = ConsoleApp(LocalSource(profile.name, lambda: gateway), home=home, faults=faults)
    yield app
    # The app's unmount stops the gateway: after the test nothing may still own the profile,
    # and the gateway's loop thread has ended.
    assert gateway.state == "stopped"
    assert read_owner(home.lock_file(profile.name)) is None
    assert gateway.loop is not None and gateway.loop.is_closed()


@pytest.fixture
def app_id() -> str:
    return unique_app_id()  # lark caches tenant tokens process-wide by app id


@pytest.fixture
def feishu_only_sims(app_id: str) -> Iterator[Simulators]:
    """The simulators with Feishu's app set to `app_id` (the simulator tests drive the SDK itself)."""
    from .feishu_only import SECRET

    with Simulators(feishu={"app_id": app_id, "app_secret": SECRET}) as started:
        yield started


@pytest.fixture
def utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The process's local time zone is UTC for the test (console pictures show clock times)."""
    import time

    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()
