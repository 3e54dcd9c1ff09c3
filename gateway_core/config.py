"""Profiles: where gatewatch keeps its files and what one gateway is configured with.

A profile is `$GATEWATCH_HOME/profiles/<name>.toml`. Loading it either yields a complete, checked
`Profile` or raises `ConfigError` whose text is one line naming the file, the key and what is
expected — the CLI prints that line and exits 2, never a traceback.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import stat
import tomllib
from typing import Any, NoReturn
from dataclasses import dataclass, field
from pathlib import Path

from .states import DmPolicy, ReplyMode

FEISHU_DOMAIN = "https://open.feishu.cn"
REPLY_MODES = tuple(ReplyMode)
GROUP_POLICIES = ("always", "mention", "never")  # the same as messages.GROUP_POLICIES
PROFILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class ConfigError(Exception):
    """A profile cannot be used; the message is one line that says what to fix."""


@dataclass(frozen=True)
class Home:
    """The directory tree under $GATEWATCH_HOME (default ~/.gatewatch)."""

    root: Path

    @classmethod
    def from_env(cls) -> "Home":
        return cls(Path(os.environ.get("GATEWATCH_HOME") or Path.home() / ".gatewatch").expanduser())

    @property
    def profiles(self) -> Path:
        return self.root / "profiles"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def run(self) -> Path:
        return self.root / "run"

    @property
    def state(self) -> Path:
        return self.root / "state"

    @property
    def secrets(self) -> Path:
        return self.root / "secrets"

    def profile_file(self, name: str) -> Path:
        return self.profiles / f"{check_profile_name(name)}.toml"

    def log_file(self, name: str) -> Path:
        return self.logs / f"gateway-{check_profile_name(name)}.log"

    def lock_file(self, name: str) -> Path:
        return self.run / f"{check_profile_name(name)}.lock"

    def socket_file(self, name: str) -> Path:
        return self.run / f"{check_profile_name(name)}.sock"

    def state_file(self, name: str) -> Path:
        """The profile's inbox journal (SQLite): unanswered messages, dedup and chat history."""
        return self.state / f"{check_profile_name(name)}.db"

    def ensure_dirs(self) -> None:
        """Create the tree; run/ is private because it holds the control socket."""
        for path in (self.root, self.profiles, self.logs):
            path.mkdir(parents=True, exist_ok=True)
        self.run.mkdir(parents=True, exist_ok=True)
        os.chmod(self.run, 0o700)

    def profile_names(self) -> list[str]:
        if not self.profiles.is_dir():
            return []
        return sorted(p.stem for p in self.profiles.glob("*.toml"))


def check_profile_name(name: str) -> str:
    """A profile name becomes a file name: refuse anything that could walk out of the home."""
    if not PROFILE_NAME.match(name or ""):
        raise ConfigError(f"profile name {name!r} is not valid: use letters, digits, '.', '_' or '-' (at most 64)")
    return name


@dataclass(frozen=True)
class FeishuConfig:
    app_id: str
    app_secret: str = field(repr=False)
    domain: str = FEISHU_DOMAIN
    liveness_timeout: float | None = None  # None: derived from the server's ping interval
    max_reconnect_interval: float = 10.0
    chat_replies_per_second: int = 5  # Feishu's limit per user / group
    app_replies_per_second: int = 50  # Feishu's limit per app
    reply_mode: ReplyMode = ReplyMode.STREAM  # STREAM: a CardKit card that grows; TEXT: one plain reply
    group_policy: str = "mention"  # in groups answer: "always" | "mention" (the bot @-mentioned) | "never"
    chat_policies: tuple[tuple[str, str], ...] = ()  # per chat id, overriding group_policy
    typing_indicator: bool = True  # a "Typing" reaction on the user's message while a text answer is prepared


@dataclass(frozen=True)
class LlmConfig:
    base_url: str
    api_key: str = field(repr=False)
    models: tuple[str, ...]
    request_timeout: float = 60.0
    idle_timeout: float = 30.0
    history_turns: int = 10
    system_prompt: str = "You are a helpful assistant."
    breaker_cooldown: float = 30.0
    history_per_user_in_groups: bool = False  # in groups, each sender gets a history of their own
    vision_models: tuple[str, ...] = ()  # of `models`, those that accept images (none: images are refused)
    max_image_bytes: int = 10 * 1024 * 1024  # the cap on an image, a voice note or a PDF downloaded
    max_file_bytes: int = 256 * 1024  # the cap on a text file, and on the text taken from a PDF
    transcribe_model: str | None = None  # voice notes go to {base_url}/audio/transcriptions with it


@dataclass(frozen=True)
class ExecutorConfig:
    max_workers: int = 8
    probe_interval: float = 2.0
    probe_deadline: float = 5.0


@dataclass(frozen=True)
class LogConfig:
    level: str = "INFO"
    max_bytes: int = 5_000_000
    backups: int = 5


@dataclass(frozen=True)
class AccessConfig:
    """Who may talk to the bot (issue 19); enforced by access.py at the pipeline's gate."""

    dm_policy: DmPolicy = DmPolicy.OPEN  # a profile without [access] answers anyone, as before
    allow: tuple[str, ...] = ()  # open_ids always allowed
    chats: tuple[str, ...] = ()  # if not empty, the only group chats answered
    user_messages_per_hour: int = 0  # per sender; 0: no limit
    declared: bool = False  # the profile has an [access] section


@dataclass(frozen=True)
class Profile:
    name: str
    path: Path
    feishu: FeishuConfig
    llm: LlmConfig
    executor: ExecutorConfig = ExecutorConfig()
    logging: LogConfig = LogConfig()
    drain_timeout: float = 20.0
    stale_after: float = 6 * 3600.0
    max_in_flight: int = 256
    not_connected_report: float = 30.0  # headless: seconds between "not connected yet" lines
    admins: tuple[str, ...] = ()  # open_ids whose in-chat `/model NAME` switches every chat
    access: AccessConfig = AccessConfig()
    # Loaded with require_secrets=False (`profile show`): what is wrong with each secret, one
    # line each with the command that fixes it; the secret itself is then "".
    secret_problems: tuple[str, ...] = ()

    @property
    def secrets(self) -> tuple[str, ...]:
        """Every secret value this profile holds, for log redaction."""
        return tuple(s for s in (self.feishu.app_secret, self.llm.api_key) if s)


class _Section:
    """Typed reads from one TOML table, each failure naming file, key and expectation.

    Every key the loader asks for is remembered, so the keys a profile may hold are exactly the
    keys the loader reads: a key added to the loader is valid without being listed anywhere else,
    and anything else in the file is a typo (see `_Document.reject_unknown`).
    """

    def __init__(self, path: Path, name: str, table: object):
        self.path, self.name = path, name
        self.read: set[str] = set()
        if not isinstance(table, dict):
            self.fail("", "a table")
        self.table: dict[str, Any] = table

    def fail(self, key: str, expected: str, got: object = None) -> NoReturn:
        where = f"{self.name}.{key}" if key else f"[{self.name}]"
        tail = "" if got is None else f", got {type(got).__name__}"
        raise ConfigError(f"{self.path}: {where}: expected {expected}{tail}")

    def get(self, key: str, default: object = None) -> object:
        self.read.add(key)
        return self.table.get(key, default)

    def has(self, key: str) -> bool:
        self.read.add(key)
        return key in self.table

    def text(self, key: str, default: str | None = None) -> str:
        value = self.get(key, default)
        if value is None:
            self.fail(key, "a string (missing)")
        if not isinstance(value, str) or not value.strip():
            self.fail(key, "a non-empty string", value)
        return value

    def number(self, key: str, default: float, minimum: float) -> float:
        value = self.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < minimum:
            self.fail(key, f"a number >= {minimum}", value)
        return float(value)

    def boolean(self, key: str, default: bool) -> bool:
        value = self.get(key, default)
        if not isinstance(value, bool):
            self.fail(key, "true or false", value)
        return value

    def choice(self, key: str, default: str, choices: tuple[str, ...]) -> str:
        value = self.get(key, default)
        if value not in choices:
            self.fail(key, "one of " + ", ".join(f'"{c}"' for c in choices), value)
        return value

    def text_list(self, key: str) -> tuple[str, ...]:
        value = self.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
            self.fail(key, "a list of non-empty strings", value)
        return tuple(value)

    def choice_table(self, key: str, choices: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
        """A free-form table (any keys, e.g. chat ids) whose every value is one of `choices`.

        Reading the table marks it read as a whole: its keys are data, not settings, so the
        unknown-key check never sees them.
        """
        value = self.get(key, {})
        if not isinstance(value, dict):
            self.fail(key, "a table of chat id = policy", value)
        for name, item in value.items():
            if item not in choices:
                self.fail(f"{key}.{name}", "one of " + ", ".join(f'"{c}"' for c in choices), item)
        return tuple(sorted(value.items()))

    def integer(self, key: str, default: int, minimum: int) -> int:
        value = self.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            self.fail(key, f"an integer >= {minimum}", value)
        return value


class _Document:
    """The whole TOML file: hands out sections and, once loading is done, rejects what was never read."""

    def __init__(self, path: Path, data: dict[str, Any]):
        self.path, self.data = path, data
        self.sections: dict[str, _Section] = {}

    def section(self, name: str) -> _Section:
        if name not in self.sections:
            self.sections[name] = _Section(self.path, name, self.data.get(name, {}))
        return self.sections[name]

    def reject_unknown(self) -> None:
        """A typo must not be ignored silently: name the first unknown key and the nearest valid one."""
        for name in self.data:
            if name not in self.sections:
                raise ConfigError(f"{self.path}: unknown section [{name}]{_nearest(name, self.sections)}")
        for name, section in self.sections.items():
            for key in section.table:
                if key not in section.read:
                    raise ConfigError(f"{self.path}: unknown key {name}.{key}{_nearest(key, section.read)}")


def _nearest(word: str, valid: object) -> str:
    names = sorted(valid)  # type: ignore[call-overload]
    close = difflib.get_close_matches(word, names, n=1, cutoff=0.75)
    if close:
        return f": did you mean {close[0]}?"
    return f": valid are {', '.join(names)}"


def load_profile(home: Home, name: str, *, require_secrets: bool = True) -> Profile:
    """Read and check one profile; secrets are resolved here so a bad one fails at start-up.

    With `require_secrets=False` (for showing a profile) a missing, empty or too-open secret is
    not an error: it is listed in `Profile.secret_problems` with the command that fixes it.
    """
    path = home.profile_file(name)
    if not path.is_file():
        raise ConfigError(f"{path}: profile '{name}' not found; create it with: gatewatch profile init {name}")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None

    document = _Document(path, data)
    feishu = document.section("feishu")
    llm = document.section("llm")
    executor = document.section("executor")
    logs = document.section("logging")
    gateway = document.section("gateway")
    declared = "access" in data
    access = document.section("access")
    secret_problems: list[str] = []

    def secret(section: _Section, key: str) -> str:
        try:
            return _read_secret(section, key)
        except SecretMissing as missing:
            if require_secrets:
                raise
            secret_problems.append(missing.fix)
            return ""

    models = llm.get("models")
    if not isinstance(models, list) or not models or not all(isinstance(m, str) and m for m in models):
        llm.fail("models", "a non-empty list of model names, the failover order", models)
    if len(set(models)) != len(models):
        llm.fail("models", "model names without repeats")
    vision_models = llm.text_list("vision_models")
    if not set(vision_models) <= set(models):
        llm.fail("vision_models", "names from llm.models (the failover order decides among them)", vision_models)

    level = logs.text("level", "INFO").upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        logs.fail("level", "one of DEBUG, INFO, WARNING, ERROR")

    domain = feishu.text("domain", FEISHU_DOMAIN).rstrip("/")
    if not domain.startswith(("https://", "http://127.0.0.1", "http://localhost")):
        feishu.fail("domain", "an https:// URL (http:// only for 127.0.0.1)")
    base_url = llm.text("base_url").rstrip("/")
    if not base_url.startswith(("https://", "http://")):
        llm.fail("base_url", "an http(s):// URL of an OpenAI-compatible API")

    profile = Profile(
        name=name,
        path=path,
        feishu=FeishuConfig(
            app_id=feishu.text("app_id"),
            app_secret=secret(feishu, "app_secret"),
            domain=domain,
            liveness_timeout=(
                feishu.number("liveness_timeout", 0.0, 1.0) if "liveness_timeout" in feishu.table else None
            ),
            max_reconnect_interval=feishu.number("max_reconnect_interval", 10.0, 0.0),
            chat_replies_per_second=feishu.integer("chat_replies_per_second", 5, 1),
            app_replies_per_second=feishu.integer("app_replies_per_second", 50, 1),
            reply_mode=ReplyMode(feishu.choice("reply_mode", ReplyMode.STREAM, REPLY_MODES)),
            group_policy=feishu.choice("group_policy", "mention", GROUP_POLICIES),
            chat_policies=feishu.choice_table("chat_policies", GROUP_POLICIES),
            typing_indicator=feishu.boolean("typing_indicator", True),
        ),
        llm=LlmConfig(
            base_url=base_url,
            api_key=secret(llm, "api_key"),
            models=tuple(models),
            request_timeout=llm.number("request_timeout", 60.0, 0.1),
            idle_timeout=llm.number("idle_timeout", 30.0, 0.1),
            history_turns=llm.integer("history_turns", 10, 0),
            system_prompt=llm.text("system_prompt", "You are a helpful assistant."),
            breaker_cooldown=llm.number("breaker_cooldown", 30.0, 0.0),
            history_per_user_in_groups=llm.boolean("history_per_user_in_groups", False),
            vision_models=vision_models,
            max_image_bytes=llm.integer("max_image_bytes", 10 * 1024 * 1024, 1024),
            max_file_bytes=llm.integer("max_file_bytes", 256 * 1024, 1024),
            transcribe_model=llm.text("transcribe_model") if llm.has("transcribe_model") else None,
        ),
        executor=ExecutorConfig(
            max_workers=executor.integer("max_workers", 8, 2),
            probe_interval=executor.number("probe_interval", 2.0, 0.05),
            probe_deadline=executor.number("probe_deadline", 5.0, 0.05),
        ),
        logging=LogConfig(
            level=level,
            max_bytes=logs.integer("max_bytes", 5_000_000, 10_000),
            backups=logs.integer("backups", 5, 1),
        ),
        drain_timeout=gateway.number("drain_timeout", 20.0, 0.0),
        stale_after=gateway.number("stale_after", 6 * 3600.0, 0.0),
        max_in_flight=gateway.integer("max_in_flight", 256, 1),
        not_connected_report=gateway.number("not_connected_report", 30.0, 0.1),
        admins=gateway.text_list("admins"),
        access=AccessConfig(
            dm_policy=DmPolicy(access.choice("dm_policy", DmPolicy.OPEN, tuple(DmPolicy))),
            allow=access.text_list("allow"),
            chats=access.text_list("chats"),
            user_messages_per_hour=access.integer("user_messages_per_hour", 0, 0),
            declared=declared,
        ),
        secret_problems=tuple(secret_problems),
    )
    document.reject_unknown()  # after every read above, so each key the loader knows is valid
    return profile


class SecretMissing(ConfigError):
    """A secret's source is named correctly but gives nothing usable; `fix` says what to run."""

    def __init__(self, section: _Section, key: str, problem: str, fix: str):
        super().__init__(f"{section.path}: {section.name}.{key}: {problem}; {fix}")
        self.fix = f"{section.name}.{key}: {problem}; {fix}"


def _read_secret(section: _Section, key: str) -> str:
    """A secret comes from `<key>_env` (an environment variable) or `<key>_file` (mode 0600).

    Never from the profile itself: profiles get copied, pasted and shown; secrets must not.
    """
    env_key, file_key = f"{key}_env", f"{key}_file"
    has_env, has_file = section.has(env_key), section.has(file_key)  # both are valid keys
    if section.has(key):
        section.fail(key, f'no inline secret: use {env_key} = "VAR" or {file_key} = "path"')
    if has_env:
        var = section.text(env_key)
        value = os.environ.get(var, "")
        if not value:
            raise SecretMissing(
                section,
                env_key,
                f"environment variable {var} is not set or empty",
                f"export {var}=… (or use {file_key})",
            )
        return value
    if has_file:
        secret_path = Path(section.text(file_key)).expanduser()
        if not secret_path.is_absolute():
            secret_path = section.path.parent / secret_path
        create = f"create it, chmod 600 {secret_path}"
        try:
            info = secret_path.stat()
        except OSError:
            raise SecretMissing(
                section, file_key, f"secret file missing: {secret_path} does not exist", create
            ) from None
        if stat.S_IMODE(info.st_mode) & 0o077:
            raise SecretMissing(
                section,
                file_key,
                f"{secret_path} is readable by others (mode {stat.S_IMODE(info.st_mode):04o})",
                f"run: chmod 600 {secret_path}",
            )
        try:
            value = secret_path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise SecretMissing(
                section,
                file_key,
                f"{secret_path} cannot be read ({type(exc).__name__})",
                f"check it is a text file you own, chmod 600 {secret_path}",
            ) from None
        if not value:
            raise SecretMissing(section, file_key, f"{secret_path} is empty", "write the secret into it, chmod 600")
        return value
    section.fail(env_key, f"{env_key} (environment variable name) or {file_key} (path to a 0600 file)")
    raise AssertionError("unreachable")


PROFILE_TEMPLATE = """\
# gatewatch profile '{name}'. Secrets never live in this file: name a file readable only by you
# (*_file, chmod 600) or an environment variable (*_env). Under launchd there is no shell
# environment, so a profile run by launchd needs the *_file form.

[feishu]
app_id = "cli_xxxxxxxxxxxxxxxx"
app_secret_file = {feishu_secret_file}
# app_secret_env = "GATEWATCH_FEISHU_APP_SECRET"
# domain = "https://open.feishu.cn"     # Lark international: "https://open.larksuite.com"
# liveness_timeout = 300                # silence before a deaf link is replaced; default and minimum:
#                                       # 2 x the server's ping interval + grace (a smaller value is raised)
# max_reconnect_interval = 10           # cap on the SDK's server-chosen reconnect waits (seconds)
# chat_replies_per_second = 5           # Feishu's limit per user or group; more are held back
# app_replies_per_second = 50           # Feishu's limit per app
# reply_mode = "stream"                 # "stream": a card that grows while the model writes (needs the
#                                       # cardkit:card:write scope; falls back to text without it);
#                                       # "text": one plain reply when the answer is complete
# group_policy = "mention"              # in groups answer "always", on an @-mention of the bot
#                                       # ("mention"; @all does not count) or "never"; p2p: always
# chat_policies = {{ "oc_xxxxxxxx" = "always" }}   # per group chat id, overriding group_policy
# typing_indicator = true               # a "Typing" reaction on the message while a text answer is
#                                       # prepared, removed when it is sent

[llm]
base_url = "https://api.openai.com/v1"  # any OpenAI-compatible API
api_key_file = {llm_secret_file}
# api_key_env = "OPENAI_API_KEY"
models = ["gpt-4o-mini", "gpt-4o"]      # failover order; the first is the default
# request_timeout = 60                  # seconds per model attempt, the whole streamed answer
# idle_timeout = 30                     # an attempt ends sooner when no byte came for this long
# history_turns = 10                    # per-chat turns sent as context
# system_prompt = "You are a helpful assistant."
# breaker_cooldown = 30                 # seconds a failing model is tried last
# history_per_user_in_groups = false    # true: in groups each sender has a history of their own
# vision_models = ["gpt-4o"]            # of models, those that accept images; none: images get a polite
#                                       # reply (an image goes to the first of these in the failover order)
# max_image_bytes = 10485760            # cap on a downloaded image, voice note or PDF (needs im:resource)
# max_file_bytes = 262144               # cap on a text file, and on the text read from a PDF
# transcribe_model = "whisper-1"        # voice notes: {{base_url}}/audio/transcriptions; none: a polite reply

[executor]
# max_workers = 8
# probe_interval = 2.0                  # canary probe period (seconds)
# probe_deadline = 5.0                  # a canary not started by then means the pool is stuck

[logging]
# level = "INFO"
# max_bytes = 5000000
# backups = 5

[gateway]
# drain_timeout = 20                    # on stop, seconds to finish in-flight replies
# stale_after = 21600                   # a message older than this (seconds) when its answer is due
                                        # gets a short "came in while I was restarting" reply instead
# max_in_flight = 256                   # answers in progress at once (one per chat at a time)
# not_connected_report = 30             # headless: until Feishu connects, say why this often (s)
# admins = ["ou_xxxxxxxx"]              # open_ids whose in-chat "/model NAME" switches every chat

[access]
dm_policy = "pairing"                   # direct messages: "pairing" (a stranger gets a code that
                                        # 'gatewatch access approve CODE' accepts), "allowlist"
                                        # (only the open_ids below and approved ones) or "open" (anyone)
# allow = ["ou_xxxxxxxx"]               # open_ids always allowed
# chats = ["oc_xxxxxxxx"]               # if set, the only group chats answered (the group policy
#                                       # still applies inside them)
# user_messages_per_hour = 0            # per person; over it, one polite "slow down"; 0: no limit
"""


def write_profile_template(home: Home, name: str) -> Path:
    """Create a commented profile; refuse to overwrite an existing one."""
    home.ensure_dirs()
    path = home.profile_file(name)
    if path.exists():
        raise ConfigError(f"{path}: already exists; edit it, or remove it first")
    home.secrets.mkdir(mode=0o700, exist_ok=True)
    # Under this home, not a hard-coded ~/.gatewatch; JSON quoting is valid TOML for any path.
    text = PROFILE_TEMPLATE.format(
        name=name,
        feishu_secret_file=json.dumps(str(home.secrets / f"{name}.feishu")),
        llm_secret_file=json.dumps(str(home.secrets / f"{name}.llm")),
    )
    path.write_text(text, encoding="utf-8")
    return path


def describe_profile(profile: Profile) -> dict[str, object]:
    """The profile as shown to a person: every value except the secrets, which read '***'."""
    return {
        "profile": profile.name,
        "file": str(profile.path),
        "feishu.app_id": profile.feishu.app_id,
        "feishu.app_secret": "***" if profile.feishu.app_secret else "(not available, see below)",
        "feishu.domain": profile.feishu.domain,
        "feishu.liveness_timeout": (
            "2 pings (derived)" if profile.feishu.liveness_timeout is None else profile.feishu.liveness_timeout
        ),
        "feishu.reply_mode": profile.feishu.reply_mode,
        "feishu.group_policy": profile.feishu.group_policy,
        "feishu.chat_policies": (
            ", ".join(f"{chat}={policy}" for chat, policy in profile.feishu.chat_policies) or "(none)"
        ),
        "feishu.typing_indicator": profile.feishu.typing_indicator,
        "llm.base_url": profile.llm.base_url,
        "llm.api_key": "***" if profile.llm.api_key else "(not available, see below)",
        "llm.models": ", ".join(profile.llm.models),
        "llm.request_timeout": profile.llm.request_timeout,
        "llm.idle_timeout": profile.llm.idle_timeout,
        "llm.history_per_user_in_groups": profile.llm.history_per_user_in_groups,
        "llm.vision_models": ", ".join(profile.llm.vision_models) or "(none: images get a polite reply)",
        "llm.max_image_bytes": profile.llm.max_image_bytes,
        "llm.max_file_bytes": profile.llm.max_file_bytes,
        "llm.transcribe_model": profile.llm.transcribe_model or "(none: voice notes get a polite reply)",
        "executor.max_workers": profile.executor.max_workers,
        "executor.probe_interval": profile.executor.probe_interval,
        "logging.level": profile.logging.level,
        "gateway.drain_timeout": profile.drain_timeout,
        "gateway.stale_after": profile.stale_after,
        "gateway.max_in_flight": profile.max_in_flight,
        "gateway.admins": ", ".join(profile.admins) or "(none)",
        "access.dm_policy": (
            profile.access.dm_policy if profile.access.declared else f"{DmPolicy.OPEN} (no [access] section)"
        ),
        "access.allow": ", ".join(profile.access.allow) or "(none)",
        "access.chats": ", ".join(profile.access.chats) or "(any)",
        "access.user_messages_per_hour": profile.access.user_messages_per_hour or "no limit",
    }


def access_warnings(profile: Profile) -> list[str]:
    """What `profile show` warns about the profile's [access] (one line each)."""
    if profile.access.declared:
        return []
    return [
        f"access.dm_policy: the profile has no [access] section, so the bot answers anyone in the tenant"
        f' and every group it is in; add [access] with dm_policy = "{DmPolicy.PAIRING}" (or "allowlist")'
    ]
