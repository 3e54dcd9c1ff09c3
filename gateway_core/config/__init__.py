"""Profiles: where gatewatch keeps its files and what one gateway is configured with.

One concern per module: `home` (the tree under $GATEWATCH_HOME and a profile's paths), `schema`
(every setting declared once), `loader` (a profile's TOML read and checked against them),
`secrets` (how a secret's source is read; a secret is never shown), `display` (`profile init`'s
template and `profile show`) and `reference` (docs/configuration.md, generated). The names the rest of the code
uses are importable from here.
"""

from .display import access_warnings, describe_profile, write_profile_template
from .home import ConfigError, Home, check_profile_name
from .loader import load_profile
from .schema import AccessConfig, ExecutorConfig, FeishuConfig, LlmConfig, LogConfig, Profile, required_keys
from .secrets import SecretMissing

__all__ = [
    "AccessConfig",
    "ConfigError",
    "ExecutorConfig",
    "FeishuConfig",
    "Home",
    "LlmConfig",
    "LogConfig",
    "Profile",
    "SecretMissing",
    "access_warnings",
    "check_profile_name",
    "describe_profile",
    "load_profile",
    "required_keys",
    "write_profile_template",
]
