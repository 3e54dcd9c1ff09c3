"""One health model: is the gateway really answering its users — decided here and nowhere else.

The incident behind gatewatch was a process that "was running" while it answered nobody. So the
verdict is about the users' side of things, from everything the gateway knows about itself:

- `unhealthy` — users are not being answered, or will not be: the gateway is not running, the
  executor is dead, Feishu is not connected (or connected and silent), replies keep failing (a
  refused tenant token fails every one), every model is failing or answers only apologies, or a
  configured model does not exist;
- `degraded` — answers go out, but something needs a look: a busy or rebuilt executor, one model's
  breaker open, a reply failure or two, messages waiting longer than they should, a spike of
  messages refused at the access gate (strangers knocking, or someone over their budget);
- `healthy` — none of the above.

Each reason is one short sentence an operator can act on ("Feishu reconnecting for 80s:
NameResolutionError; next attempt in 4s"). `status`, the control socket, the console header and
the headless runner's stderr all show this verdict; nobody else decides "healthy".
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .states import ExecutorState, FeishuState, GatewayState, Verdict

if TYPE_CHECKING:
    from .executor import ExecutorSnapshot
    from .feishu import FeishuSnapshot
    from .llm import ModelsSnapshot
    from .pipeline import PipelineSnapshot
    from .replies import ReplyStats

# The verdicts under their old short names, which the callers and tests use.
HEALTHY, DEGRADED, UNHEALTHY = Verdict.HEALTHY, Verdict.DEGRADED, Verdict.UNHEALTHY
VERDICTS = tuple(Verdict)

REPLY_FAILURES_UNHEALTHY = 3  # reply attempts failed in a row (not "too fast"): nobody gets answers
APOLOGIES_UNHEALTHY = 3  # apologies in a row: the models answer nobody
PENDING_DEGRADED_AFTER = 60.0  # seconds the oldest unanswered message may wait before it is news
REFUSALS_DEGRADED = 20  # messages refused at the access gate in the last hour: a spike worth a look
REASON_CHARS = 160  # a reason is a sentence, not a dump of an error body


@dataclass(frozen=True)
class Health:
    verdict: str = HEALTHY  # healthy | degraded | unhealthy
    reasons: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """Users get answers (healthy or degraded)."""
        return self.verdict != UNHEALTHY

    def one_line(self) -> str:
        """`healthy`, or `unhealthy: reason; reason` — for status lines and the in-chat /status."""
        return self.verdict if not self.reasons else f"{self.verdict}: {'; '.join(self.reasons)}"


def assess(
    state: str,
    executor: "ExecutorSnapshot",
    feishu: "FeishuSnapshot",
    models: "ModelsSnapshot",
    pipeline: "PipelineSnapshot",
    replies: "ReplyStats | None",
    now: float | None = None,
) -> Health:
    """The verdict and its reasons, worst first, from one moment's snapshots."""
    now = time.time() if now is None else now
    bad: list[str] = []
    meh: list[str] = []
    if state != GatewayState.RUNNING:
        bad.append(f"gateway {state}")
    _judge_executor(executor, bad, meh)
    _judge_feishu(feishu, now, bad)
    if replies is not None:
        _judge_replies(replies, bad, meh)
    _judge_models(models, pipeline, bad, meh)
    _judge_backlog(pipeline, now, meh)
    _judge_access(pipeline, meh)
    reasons = tuple(_short(r) for r in (*bad, *meh))
    return Health(UNHEALTHY if bad else DEGRADED if meh else HEALTHY, reasons)


def _judge_executor(executor: "ExecutorSnapshot", bad: list[str], meh: list[str]) -> None:
    if executor.state == ExecutorState.DEAD:
        bad.append(f"executor dead: {executor.last_restart_cause or 'its probe never finishes'}")
    elif executor.state == ExecutorState.REPLACED:
        meh.append(f"executor rebuilt: {executor.last_restart_cause or 'operator request'}")
    elif executor.state in (ExecutorState.BUSY, ExecutorState.DEGRADED):
        meh.append(
            f"executor {executor.state}: {executor.busy}/{executor.max_workers} threads busy, {executor.queued} queued"
        )
    elif executor.state not in (ExecutorState.HEALTHY, ExecutorState.STARTING):
        bad.append(f"executor {executor.state}")


def _judge_feishu(feishu: "FeishuSnapshot", now: float, bad: list[str]) -> None:
    if feishu.state == FeishuState.CONNECTED:
        if feishu.suspect:
            silent = f" for {_dur(now - feishu.last_frame_at)}" if feishu.last_frame_at else ""
            bad.append(f"Feishu connected but silent{silent}: {feishu.suspect_reason or 'pings unanswered'}")
        return
    if feishu.state == FeishuState.FAILED:
        bad.append(f"Feishu refused the app: {feishu.last_error or feishu.detail or 'credentials rejected'}")
        return
    sentence = f"Feishu {feishu.state} for {_dur(now - feishu.since)}"
    why = feishu.last_error or feishu.detail
    if why:
        sentence += f": {why}"
    if feishu.next_attempt_at is not None and feishu.next_attempt_at > now:
        sentence += f"; next attempt in {_dur(feishu.next_attempt_at - now)}"
    bad.append(sentence)


def _judge_replies(replies: "ReplyStats", bad: list[str], meh: list[str]) -> None:
    failing = replies.failures_in_a_row
    if not failing:
        return
    last = replies.last_error or "unknown error"
    if replies.token_refused:
        detail = last.removeprefix("tenant token refused: ")
        bad.append(f"replies failing: tenant token refused ({detail}); check the app secret")
    elif failing >= REPLY_FAILURES_UNHEALTHY:
        bad.append(f"replies failing: {failing} in a row, last: {last}")
    else:
        meh.append(f"reply failed: {last}")


def _judge_models(models: "ModelsSnapshot", pipeline: "PipelineSnapshot", bad: list[str], meh: list[str]) -> None:
    for model in models.models:
        if model.unknown:
            bad.append(f"model {model.name} does not exist at the provider ({model.last_error or 'not found'})")
    known = [m for m in models.models if not m.unknown]
    open_ = [m for m in known if m.breaker == "open"]
    if models.models and known and len(open_) == len(known):
        bad.append("every model failing: " + ", ".join(f"{m.name} ({m.last_error or 'error'})" for m in open_))
    else:
        for model in open_:
            meh.append(
                f"model {model.name} failing, tried last for {_dur(model.open_for)}: {model.last_error or 'error'}"
            )
    if pipeline.apologies_in_a_row >= APOLOGIES_UNHEALTHY:
        bad.append(f"{pipeline.apologies_in_a_row} apologies in a row: no model answers")


def _judge_backlog(pipeline: "PipelineSnapshot", now: float, meh: list[str]) -> None:
    if pipeline.pending and pipeline.oldest_pending_at is not None:
        waited = now - pipeline.oldest_pending_at
        if waited > PENDING_DEGRADED_AFTER:
            meh.append(f"{pipeline.pending} messages unanswered, the oldest for {_dur(waited)}")


def _judge_access(pipeline: "PipelineSnapshot", meh: list[str]) -> None:
    access = pipeline.access
    if access is not None and access.refused_last_hour >= REFUSALS_DEGRADED:
        waiting = f", {len(access.pending)} pairing requests waiting" if access.pending else ""
        meh.append(f"{access.refused_last_hour} messages refused at the access gate in the last hour{waiting}")


def _short(reason: str) -> str:
    # One line, bounded: reasons land in a one-line header and in a launchd log.
    reason = " ".join(reason.split())
    return reason if len(reason) <= REASON_CHARS else reason[: REASON_CHARS - 1] + "…"


def _dur(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h{(seconds % 3600) // 60:02d}m"
