"""A profile written and shown for people: `profile init`'s template and `profile show`.

Both list every declared setting (`schema.SETTINGS`) with its help or value, so neither can leave
one out; a secret is written as its source and shown masked, never as itself.
"""

from __future__ import annotations

import json
import textwrap
import typing
from pathlib import Path

from ..states import DmPolicy
from .home import ConfigError, Home
from .schema import SECTIONS, SETTINGS, ChatPolicies, Kind, Profile, Setting, settings_of
from .secrets import masked, source_keys

TEMPLATE_HEAD = """\
# gatewatch profile '{name}'. Every setting is listed with what it does; a commented-out one
# shows its default (or an example) and can be uncommented. The reference: docs/configuration.md.
# Secrets never live in this file: name a file readable only by you (*_file, chmod 600) or an
# environment variable (*_env). Under launchd there is no shell environment, so a profile run by
# launchd needs the *_file form.
"""


def toml_value(value: object) -> str:
    """A default as TOML (JSON's strings and lists are TOML's)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, tuple):
        return json.dumps(list(value))
    return json.dumps(value) if isinstance(value, str) else str(value)


def profile_template(home: Home, name: str) -> str:
    """`profile init`'s commented profile: every declared setting, the required ones set."""
    lines = [TEMPLATE_HEAD.format(name=name).rstrip("\n")]
    for section in SECTIONS:
        lines += ["", f"[{section}]"]
        for n, setting in enumerate(settings_of(section)):
            lines += ([""] if n else []) + textwrap.wrap(
                setting.about.help, 98, initial_indent="# ", subsequent_indent="# "
            )
            if setting.kind is Kind.SECRET:
                env_key, file_key = source_keys(setting.name)
                # Under this home, not a hard-coded ~/.gatewatch; JSON quoting is valid TOML for any path.
                lines.append(f"{file_key} = {json.dumps(str(home.secret_file(name, section)))}")
                lines.append(f"# {env_key} = {setting.about.example}")
                continue
            value = setting.about.example if setting.about.example is not None else toml_value(setting.default)
            lines.append(f"{'' if setting.required or setting.about.suggest else '# '}{setting.name} = {value}")
    return "\n".join(lines) + "\n"


def write_profile_template(home: Home, name: str) -> Path:
    """Create a commented profile; refuse to overwrite an existing one."""
    home.ensure_dirs()
    path = home.profile_file(name)
    if path.exists():
        raise ConfigError(f"{path}: already exists; edit it, or remove it first")
    home.secrets.mkdir(mode=0o700, exist_ok=True)
    path.write_text(profile_template(home, name), encoding="utf-8")
    return path


def shown_value(setting: Setting, value: object) -> str:
    """A setting's value as a person reads it: secrets masked, "not set" in words."""
    if setting.kind is Kind.SECRET:
        return masked(str(value))
    if setting.about.empty is not None and value in (None, (), 0) and not isinstance(value, bool):
        return setting.about.empty
    if setting.kind is Kind.POLICY_TABLE:
        return ", ".join(f"{chat}={policy}" for chat, policy in typing.cast(ChatPolicies, value))
    if isinstance(value, tuple):
        return ", ".join(value)
    return value if isinstance(value, str) else toml_value(value)


def describe_profile(profile: Profile) -> dict[str, str]:
    """The profile as shown to a person: every declared setting, the secrets as '***'."""
    shown = {"profile": profile.name, "file": str(profile.path)}
    for setting in SETTINGS:
        shown[setting.key] = shown_value(setting, setting.value_in(profile))
    if not profile.access.declared:
        shown["access.dm_policy"] += " (no [access] section)"
    return shown


def access_warnings(profile: Profile) -> list[str]:
    """What `profile show` warns about the profile's [access] (one line each)."""
    if profile.access.declared:
        return []
    return [
        f"access.dm_policy: the profile has no [access] section, so the bot answers anyone in the tenant"
        f' and every group it is in; add [access] with dm_policy = "{DmPolicy.PAIRING}" (or "allowlist")'
    ]
