"""Profiles: where gatewatch keeps its files and what one gateway is configured with.

Three concerns, one module each: `home` (the tree under $GATEWATCH_HOME and a profile's paths),
`schema` (every setting declared once, and the loader, template and display made from the
declarations) and `secrets` (how a secret's source is read; a secret is never shown).
`reference` writes docs/configuration.md from the declarations. The names the rest of the code
uses are importable from here.
"""

from .home import ConfigError, Home, check_profile_name
from .schema import (
    AccessConfig,
    ExecutorConfig,
    FeishuConfig,
    LlmConfig,
    LogConfig,
    Profile,
    access_warnings,
    describe_profile,
    load_profile,
    required_keys,
    write_profile_template,
)
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
