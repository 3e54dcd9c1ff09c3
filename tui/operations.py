"""The operator's actions on the gateway: model, Feishu, executor and (in the demo) faults.

Each runs as a worker (`exit_on_error=False`: with an embedded gateway, an error that exited the
app would kill the gateway too); the app's one `Worker.StateChanged` handler reports a failure,
named by the worker. Whether an action is on offer now is `check_action`'s answer, so the footer
dims what cannot run and a key pressed meanwhile does nothing.
"""

from __future__ import annotations

from textual import work

from gateway_core.access import AccessOp, AccessSnapshot
from gateway_core.threads import in_own_thread

from .host import ConsoleHost
from .phase import ConsolePhase
from .screens import AccessModal, Fault, fault_menu, model_picker

OPERATIONS = ("pick_model", "restart_feishu", "rebuild_executor", "faults", "access")
FEISHU_RESTART = "feishu-restart"


class Operations(ConsoleHost):
    """Mixed into ConsoleApp: `m`, `r`, `e`, `a` and `f`."""

    def operation_state(self, action: str) -> bool | None:
        """check_action for the operations: None (shown, disabled) while there is nothing to operate."""
        if action == "faults" and not self.faults:
            return False  # the fault menu exists only in the demo
        if action == "access":
            access = self.access_shown()
            if access is None or access.policy != "pairing":
                return False  # nobody pairs: nothing to decide
            return (self.operable() and bool(access.pending)) or None
        if action == "restart_feishu" and any(w.group == FEISHU_RESTART and not w.is_finished for w in self.workers):
            return None  # one restart at a time; a repeated key is not a second restart
        return self.operable() or None

    def operable(self) -> bool:
        """A gateway that answers: served here, or attached and not gone quiet."""
        attached = self.opened.attachment()
        if attached is not None:  # its mode says whether the owner answers
            return self.phase == ConsolePhase.ATTACHED and not attached.stale
        return self.phase == ConsolePhase.SERVING and self.opened.running

    def action_pick_model(self) -> None:
        self.push_screen(model_picker(self.opened.snapshot().models), self._on_model_picked)

    def _on_model_picked(self, name: str | None) -> None:
        if name:
            self.switch_model(name)

    @work(group="operations", exit_on_error=False, name="switching the model")
    async def switch_model(self, name: str) -> None:
        previous = await self.opened.switch_model(name)
        if previous != name:
            self.notify(f"model switched: {previous} → {name}", markup=False)
        self.refresh_panels()

    def action_restart_feishu(self) -> None:
        self.notify("restarting the Feishu connection…")
        self.restart_feishu()

    @work(group=FEISHU_RESTART, exit_on_error=False, name="restarting the Feishu connection")
    async def restart_feishu(self) -> None:
        if not await self.opened.restart_feishu():  # the gateway's own guard: one restart at a time
            self.notify("a Feishu restart is already running", severity="warning")
        self.refresh_panels()

    def action_rebuild_executor(self) -> None:
        self.rebuild_executor()

    @work(group="operations", exit_on_error=False, name="rebuilding the executor")
    async def rebuild_executor(self) -> None:
        await self.opened.rebuild_executor()
        self.notify("executor rebuilt")
        self.refresh_panels()

    def access_shown(self) -> AccessSnapshot | None:
        """The access gate as last read (the key follows what the screen shows)."""
        reading = self.main.reading if self.main is not None else None
        return reading.snapshot.pipeline.access if reading is not None else None

    def action_access(self) -> None:
        access = self.access_shown()
        if access is not None and access.pending:
            self.push_screen(AccessModal(access.pending, self.clock(), access.policy), self._on_access_decided)

    def _on_access_decided(self, decision: tuple[AccessOp, str] | None) -> None:
        if decision is not None:
            self.decide_access(*decision)

    @work(group="operations", exit_on_error=False, name="deciding a pairing request")
    async def decide_access(self, op: AccessOp, open_id: str) -> None:
        await self.opened.access_request(op, open_id)
        done = "approved: the bot answers them now" if op == AccessOp.APPROVE else "denied"
        self.notify(f"{open_id} {done}", markup=False)
        self.refresh_panels()

    def action_faults(self) -> None:
        self.push_screen(fault_menu(self.faults), self._on_fault_picked)

    def _on_fault_picked(self, fault_id: str | None) -> None:
        fault = next((f for f in self.faults if f.id == fault_id), None)
        if fault is not None:
            self.inject_fault(fault)

    @work(group="faults", exit_on_error=False, name="injecting a fault")
    async def inject_fault(self, fault: Fault) -> None:
        # Fault injections block (the simulator waits until a socket really dropped): off the loop.
        outcome = await in_own_thread(fault.inject)
        self.notify(outcome, title="fault injected", severity="warning", markup=False)
