"""The profile schema: every setting declared once.

A profile is `$GATEWATCH_HOME/profiles/<name>.toml`. Each of its settings is one dataclass field
below: the annotation is its type (`Literal` or a `StrEnum` for a choice), the field's default is
its default, and `about(...)` holds the rest — help, lower bound, an example for the template.
A section is one dataclass (the [gateway] section's settings sit on `Profile` itself). `SETTINGS`
reads them off the fields, and everything else works from `SETTINGS` alone: the loader
(`loader.py`), `profile init`'s template and `profile show` (`display.py`) and
docs/configuration.md (`reference.py`). So a setting added here is valid, templated, shown and
documented without being written anywhere else, and each default is written once: here.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum, StrEnum
from pathlib import Path
from typing import Any, Literal

from ..messages import DEFAULT_GROUP_POLICY, GroupPolicy
from ..states import DmPolicy, ReplyMode
from .secrets import source_keys

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]
ChatPolicies = tuple[tuple[str, GroupPolicy], ...]

_ABOUT = "gatewatch.setting"  # the dataclass field metadata key that makes a field a setting


@dataclass(frozen=True)
class About:
    """What a setting's type and default do not say."""

    help: str  # one or two sentences: the docs' table, the template's comment
    minimum: float | None = None  # numbers: the smallest value accepted
    example: str | None = None  # TOML the template shows, where the default is no good sample
    suggest: bool = False  # the template sets it rather than leaving it commented out
    empty: str | None = None  # how "not set" (None, no items, 0) reads in `profile show` and the docs
    secret: bool = False  # read from `<name>_env` / `<name>_file`, never shown
    expect: str | None = None  # the expectation an error names, instead of the one the type gives
    normalise: Callable[[str], str] | None = None  # applied to a string value before it is checked
    check: Callable[[Any], str | None] | None = None  # after the type: what the value should be, or None


def about(
    help: str,
    *,
    minimum: float | None = None,
    example: str | None = None,
    suggest: bool = False,
    empty: str | None = None,
    secret: bool = False,
    expect: str | None = None,
    normalise: Callable[[str], str] | None = None,
    check: Callable[[Any], str | None] | None = None,
) -> dict[str, About]:
    """A dataclass field's metadata that declares it a setting."""
    return {_ABOUT: About(help, minimum, example, suggest, empty, secret, expect, normalise, check)}


def _feishu_domain(value: str) -> str | None:
    if value.startswith(("https://", "http://127.0.0.1", "http://localhost")):
        return None
    return "an https:// URL (http:// only for 127.0.0.1)"


def _api_url(value: str) -> str | None:
    return None if value.startswith(("https://", "http://")) else "an http(s):// URL of an OpenAI-compatible API"


def _failover_order(models: tuple[str, ...]) -> str | None:
    if not models:
        return "a non-empty list of model names, the failover order"
    return "model names without repeats" if len(set(models)) != len(models) else None


def _no_trailing_slash(url: str) -> str:
    return url.rstrip("/")


# ---------------------------------------------------------------------------- the declarations


@dataclass(frozen=True)
class FeishuConfig:
    app_id: str = field(
        metadata=about("The Feishu/Lark app's id (the developer console's App ID).", example='"cli_xxxxxxxxxxxxxxxx"')
    )
    app_secret: str = field(
        repr=False,
        metadata=about("The app's secret.", secret=True, example='"GATEWATCH_FEISHU_APP_SECRET"'),
    )
    domain: str = field(
        default="https://open.feishu.cn",
        metadata=about(
            "Feishu's open platform; Lark international: `https://open.larksuite.com`.",
            normalise=_no_trailing_slash,
            check=_feishu_domain,
        ),
    )
    liveness_timeout: float | None = field(
        default=None,
        metadata=about(
            "Seconds without any frame before a deaf connection is replaced. Never below 2 x the server's ping"
            " interval + grace: a smaller value is raised, with one warning.",
            minimum=1.0,
            example="300",
            empty="derived: 2 pings",
        ),
    )
    max_reconnect_interval: float = field(
        default=10.0,
        metadata=about("Cap on the SDK's server-chosen waits between reconnect attempts (seconds).", minimum=0.0),
    )
    chat_replies_per_second: int = field(
        default=5,
        metadata=about(
            "Replies (plain text and streaming cards' messages alike) sent per second to one chat: Feishu's limit"
            " per user or group (over it Feishu answers 230020). More are held back.",
            minimum=1,
        ),
    )
    app_replies_per_second: int = field(
        default=50, metadata=about("Replies sent per second for the whole app: Feishu's limit per app.", minimum=1)
    )
    reply_mode: ReplyMode = field(
        default=ReplyMode.STREAM,
        metadata=about(
            '"stream": the answer grows in a CardKit card while the model writes (needs the cardkit:card:write'
            " scope; without it replies fall back to plain text, detected once and shown in the console);"
            ' "text": one plain reply when the answer is complete.'
        ),
    )
    group_policy: GroupPolicy = field(
        default=DEFAULT_GROUP_POLICY,
        metadata=about(
            'In group chats answer "always", only when the bot itself is @-mentioned ("mention"; @all does not'
            ' count) or "never". Direct messages are always answered.'
        ),
    )
    chat_policies: ChatPolicies = field(
        default=(),
        metadata=about(
            "Per group chat id, a group policy overriding group_policy (an inline table, or a"
            " [feishu.chat_policies] table).",
            example='{ "oc_xxxxxxxx" = "always" }',
            empty="(none)",
        ),
    )
    typing_indicator: bool = field(
        default=True,
        metadata=about(
            'A "Typing" reaction on the user\'s message while a text answer is prepared, removed once the reply'
            " is sent."
        ),
    )


@dataclass(frozen=True)
class LlmConfig:
    base_url: str = field(
        metadata=about(
            "An OpenAI-compatible API (`.../v1`).",
            example='"https://api.openai.com/v1"',
            normalise=_no_trailing_slash,
            check=_api_url,
        )
    )
    api_key: str = field(repr=False, metadata=about("The API key.", secret=True, example='"OPENAI_API_KEY"'))
    models: tuple[str, ...] = field(
        metadata=about(
            "The failover order: the first is the default, a failing model is tried last for breaker_cooldown.",
            example='["gpt-4o-mini", "gpt-4o"]',
            expect="a non-empty list of model names, the failover order",
            check=_failover_order,
        )
    )
    request_timeout: float = field(
        default=60.0,
        metadata=about(
            "Seconds per model attempt: connect, headers and the whole streamed answer; then the next model is tried.",
            minimum=0.1,
        ),
    )
    idle_timeout: float = field(
        default=30.0, metadata=about("An attempt also ends when no byte came for this long (seconds).", minimum=0.1)
    )
    history_turns: int = field(default=10, metadata=about("Turns of per-chat history sent as context.", minimum=0))
    system_prompt: str = field(default="You are a helpful assistant.", metadata=about("The system message."))
    breaker_cooldown: float = field(default=30.0, metadata=about("Seconds a failing model is tried last.", minimum=0.0))
    history_per_user_in_groups: bool = field(
        default=False,
        metadata=about(
            "In groups, each sender has a history of their own instead of one per chat; /reset forgets them all."
        ),
    )
    vision_models: tuple[str, ...] = field(
        default=(),
        metadata=about(
            "Of models, those that accept images: an image goes to the first of them in the failover order"
            " (failover among them only).",
            example='["gpt-4o"]',
            empty="(none: images get a polite reply)",
        ),
    )
    max_image_bytes: int = field(
        default=10 * 1024 * 1024,
        metadata=about(
            "The most downloaded for an image, a voice note or a PDF (needs the im:resource scope); larger:"
            " a polite reply.",
            minimum=1024,
        ),
    )
    max_file_bytes: int = field(
        default=256 * 1024,
        metadata=about("The most read of a text file, and of a PDF's text.", minimum=1024),
    )
    transcribe_model: str | None = field(
        default=None,
        metadata=about(
            "Voice notes go to `{base_url}/audio/transcriptions` with this model and are answered from the transcript.",
            example='"whisper-1"',
            empty="(none: voice notes get a polite reply)",
        ),
    )


@dataclass(frozen=True)
class ExecutorConfig:
    max_workers: int = field(default=8, metadata=about("Threads of the held pool.", minimum=2))
    probe_interval: float = field(
        default=2.0, metadata=about("Seconds between the canary probes of the pool.", minimum=0.05)
    )
    probe_deadline: float = field(
        default=5.0,
        metadata=about("A canary not started within this many seconds means the pool is stuck.", minimum=0.05),
    )


@dataclass(frozen=True)
class LogConfig:
    level: LogLevel = field(default="INFO", metadata=about("The log file's minimum level.", normalise=str.upper))
    max_bytes: int = field(default=5_000_000, metadata=about("Size at which the log file is rotated.", minimum=10_000))
    backups: int = field(default=5, metadata=about("Rotated log files kept.", minimum=1))


@dataclass(frozen=True)
class AccessConfig:
    """Who may talk to the bot (issue 19); enforced by access.py at the pipeline's gate."""

    dm_policy: DmPolicy = field(
        default=DmPolicy.OPEN,
        metadata=about(
            'Who is answered in direct messages: "pairing" (a stranger gets a code that `gatewatch access'
            ' approve CODE` accepts), "allowlist" (only access.allow and approved people) or "open" (anyone).'
            " A profile without [access] is open, and `profile show` warns about it; the template writes"
            ' "pairing".',
            example='"pairing"',
            suggest=True,
        ),
    )
    allow: tuple[str, ...] = field(
        default=(), metadata=about("open_ids (`ou_...`) always answered.", example='["ou_xxxxxxxx"]', empty="(none)")
    )
    chats: tuple[str, ...] = field(
        default=(),
        metadata=about(
            "If set, the only group chats (`oc_...`) answered; the group policy still applies inside them.",
            example='["oc_xxxxxxxx"]',
            empty="(any)",
        ),
    )
    user_messages_per_hour: int = field(
        default=0,
        metadata=about(
            'Messages per person per hour that are answered; over it, one polite "slow down" an hour.',
            minimum=0,
            empty="no limit",
        ),
    )
    declared: bool = False  # the profile has an [access] section (not a setting: the section's presence)


@dataclass(frozen=True)
class Profile:
    name: str
    path: Path
    feishu: FeishuConfig
    llm: LlmConfig
    executor: ExecutorConfig = ExecutorConfig()
    logging: LogConfig = LogConfig()
    # [gateway]
    drain_timeout: float = field(
        default=20.0,
        metadata=about(
            "On stop, seconds to finish in-flight answers; the rest are handed on to the next owner.", minimum=0.0
        ),
    )
    stale_after: float = field(
        default=6 * 3600.0,
        metadata=about(
            "A message still unanswered this many seconds after it arrived (the gateway was down) gets a short"
            ' "came in while I was restarting" reply instead of an answer.',
            minimum=0.0,
        ),
    )
    max_in_flight: int = field(
        default=256,
        metadata=about("Answers in progress at once; more wait in line, one at a time per chat.", minimum=1),
    )
    not_connected_report: float = field(
        default=30.0,
        metadata=about(
            "Headless: until Feishu first connects, seconds between `not connected yet: <reason>` lines.",
            minimum=0.1,
        ),
    )
    admins: tuple[str, ...] = field(
        default=(),
        metadata=about(
            "open_ids (`ou_...`) whose in-chat `/model NAME` switches every chat rather than just theirs.",
            example='["ou_xxxxxxxx"]',
            empty="(none)",
        ),
    )
    access: AccessConfig = AccessConfig()
    # Loaded with require_secrets=False (`profile show`): what is wrong with each secret, one
    # line each with the command that fixes it; the secret itself is then "".
    secret_problems: tuple[str, ...] = ()
    # Where each secret was read from ("feishu.app_secret_file"): a service manager passes no
    # environment, so `launchd|systemd install` refuses a profile with an `_env` source.
    secret_sources: tuple[str, ...] = ()

    @property
    def secrets(self) -> tuple[str, ...]:
        """Every secret value this profile holds, for log redaction."""
        return tuple(value for s in SETTINGS if s.kind is Kind.SECRET and (value := s.value_in(self)))


# The sections in the order a profile, the template and the docs list them.
SECTIONS: dict[str, type] = {
    "feishu": FeishuConfig,
    "llm": LlmConfig,
    "executor": ExecutorConfig,
    "logging": LogConfig,
    "gateway": Profile,
    "access": AccessConfig,
}


# ---------------------------------------------------------------------------- the settings, read off the fields


class Kind(Enum):
    """How a setting's value is written in TOML, as its annotation says."""

    TEXT = "a non-empty string"
    INTEGER = "an integer"
    NUMBER = "a number"
    FLAG = "true or false"
    CHOICE = "one of"
    NAMES = "a list of non-empty strings"
    POLICY_TABLE = "a table of chat id = policy"
    SECRET = "a secret's source"


@dataclass(frozen=True)
class Setting:
    """One declared key: its section, name, kind, default and `About`."""

    section: str
    name: str
    kind: Kind
    about: About
    default: object  # dataclasses.MISSING: required
    optional: bool = False  # None is a value: "not set"
    choices: tuple[str, ...] = ()
    enum: type[StrEnum] | None = None

    @property
    def key(self) -> str:
        return f"{self.section}.{self.name}"

    @property
    def required(self) -> bool:
        return self.default is dataclasses.MISSING

    @property
    def accepted_keys(self) -> tuple[str, ...]:
        """The TOML keys that set it: a secret is set by naming its source.

        A secret's own name is accepted too, to be refused by `read_secret` saying where it goes.
        """
        return (self.name, *source_keys(self.name)) if self.kind is Kind.SECRET else (self.name,)

    @property
    def expectation(self) -> str:
        """What a valid value is, as an error says it."""
        if self.about.expect:
            return self.about.expect
        if self.kind is Kind.CHOICE:
            return "one of " + ", ".join(f'"{c}"' for c in self.choices)
        if self.kind in (Kind.INTEGER, Kind.NUMBER) and self.about.minimum is not None:
            return f"{self.kind.value} >= {self.about.minimum:g}"
        return str(self.kind.value)

    def value_in(self, profile: Profile) -> Any:
        """This setting's value in a loaded profile."""
        holder = {
            "feishu": profile.feishu,
            "llm": profile.llm,
            "executor": profile.executor,
            "logging": profile.logging,
            "gateway": profile,
            "access": profile.access,
        }[self.section]
        return getattr(holder, self.name)


def _kind_of(annotation: Any, about: About) -> tuple[Kind, bool, tuple[str, ...], type[StrEnum] | None]:
    """(kind, optional, choices, enum) of a field's annotation; a type the loader cannot read fails at import."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType) and type(None) in args:
        (inner,) = [a for a in args if a is not type(None)]
        kind, _, choices, enum = _kind_of(inner, about)
        return kind, True, choices, enum
    if about.secret and annotation is str:
        return Kind.SECRET, False, (), None
    simple = {str: Kind.TEXT, bool: Kind.FLAG, int: Kind.INTEGER, float: Kind.NUMBER}
    if annotation in simple:
        return simple[annotation], False, (), None
    if origin is Literal:
        return Kind.CHOICE, False, tuple(str(a) for a in args), None
    if isinstance(annotation, type) and issubclass(annotation, StrEnum):
        return Kind.CHOICE, False, tuple(m.value for m in annotation), annotation
    if origin is tuple and args == (str, Ellipsis):
        return Kind.NAMES, False, (), None
    if origin is tuple and typing.get_origin(args[0]) is tuple:
        return Kind.POLICY_TABLE, False, _kind_of(typing.get_args(args[0])[1], about)[2], None
    raise TypeError(f"a setting of type {annotation!r} cannot be read from TOML")


def _declared() -> tuple[Setting, ...]:
    settings = []
    for section, cls in SECTIONS.items():
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if _ABOUT not in f.metadata:
                continue
            about_it: About = f.metadata[_ABOUT]
            kind, optional, choices, enum = _kind_of(hints[f.name], about_it)
            settings.append(Setting(section, f.name, kind, about_it, f.default, optional, choices, enum))
    return tuple(settings)


SETTINGS: tuple[Setting, ...] = _declared()


def settings_of(section: str) -> tuple[Setting, ...]:
    return tuple(s for s in SETTINGS if s.section == section)


def required_keys() -> tuple[str, ...]:
    """The settings a profile must set (`profile init` says which)."""
    return tuple(s.key for s in SETTINGS if s.required)


def accepted_keys(section: str) -> tuple[str, ...]:
    """Every key the loader accepts in one section: what the declarations say, nothing else."""
    return tuple(key for s in settings_of(section) for key in s.accepted_keys)
