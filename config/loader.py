"""Build `Settings` from a profile, a JSON config file, environment variables and command-line overrides.

Later sources win, key by key: profile defaults < config file < environment < overrides. Any problem
(unknown key, wrong type, unreadable file, bad accounts file) becomes one `ConfigError` line that names the
key, the problem and where the value came from. Values are never quoted in errors, so a secret typed into
the wrong place cannot leak through them.

Environment variables:
- `OBSERVER_CONFIG`: the config file when none is passed. Empty variables count as unset.
- `OBSERVER_<KEY>` and `OBSERVER_<SECTION>__<KEY>` for any setting (`OBSERVER_PROFILE=hybrid`,
  `OBSERVER_SCAN__INTERVAL_SECONDS=60`, `OBSERVER_SLOTS__WATCHLIST='["005930"]'`); an unknown name is
  an error.
- `KIS_APP_KEY`, `KIS_APP_SECRET` (+ `KIS_ACCOUNT_NO`, `KIS_HTS_ID`, `KIS_PAPER`): one account, or
  `KIS_ACCOUNTS_FILE`: a JSON file holding the account pool. Either replaces accounts from the config file.
- `TELEGRAM_BOT_TOKEN`, `TELEGRAM_CHAT_ID`, `TELEGRAM_API_BASE`, `DISCORD_WEBHOOK_URL`: the notifier.
"""

from __future__ import annotations

import copy
import difflib
import json
import os
import types
import typing
from collections.abc import Mapping
from datetime import time
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, SecretStr, ValidationError

from config.accounts import ACCOUNT_ENV, account_from_env, accounts_from_document, shown_key
from config.profiles import DEFAULT_PROFILE, PROFILES
from config.settings import Settings

ENV_PREFIX = "OBSERVER_"
ENV_NESTING = "__"
CONFIG_FILE_ENV = "OBSERVER_CONFIG"
HTTP_ENV = frozenset({"OBSERVER_HTTP_TOKEN", "OBSERVER_HTTP_TOKEN_NAME", "OBSERVER_HTTP_TOKENS"})
"""Read by the HTTP surface (`surfaces.server`), not settings: no token ever enters the Settings object."""
ACCOUNTS_FILE_ENV = "KIS_ACCOUNTS_FILE"
NOTIFIER_ENV = {
    "TELEGRAM_BOT_TOKEN": "telegram_bot_token",
    "TELEGRAM_CHAT_ID": "telegram_chat_id",
    "TELEGRAM_API_BASE": "telegram_api_base",
    "DISCORD_WEBHOOK_URL": "discord_webhook_url",
}

Key = tuple[str | int, ...]


class ConfigError(Exception):
    """A configuration problem; `str()` is one line naming the key, the problem and the source."""


def load_settings(
    config_file: Path | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Validated settings. `env` defaults to `os.environ`; `overrides` (e.g. from CLI flags) win over all.

    `overrides` is nested like the config file: `{"data_dir": Path("/srv/data"), "scan": {...}}`.
    """
    env = os.environ if env is None else env
    if config_file is None and env.get(CONFIG_FILE_ENV):
        config_file = Path(env[CONFIG_FILE_ENV])

    layers: list[tuple[dict[str, Any], dict[Key, str]]] = []
    if config_file is not None:
        document = _read_json(config_file, f"config file {config_file}")
        if not isinstance(document, dict):
            raise ConfigError(f"config error in {config_file}: expected a JSON object at the top level")
        layers.append((document, _leaf_sources(document, str(config_file))))
    layers.append(_env_layer(env))
    if overrides:
        plain = {key: _plain(value) for key, value in overrides.items()}
        layers.append((plain, _leaf_sources(plain, "command-line options")))

    explicit: dict[str, Any] = {}
    sources: dict[Key, str] = {}
    for values, layer_sources in layers:
        _deep_merge(explicit, values)
        sources.update(layer_sources)

    profile = explicit.get("profile", DEFAULT_PROFILE)
    if not isinstance(profile, str) or profile not in PROFILES:
        where = sources.get(("profile",), "the configuration")
        raise ConfigError(f"config error in {where}: profile: must be one of {', '.join(PROFILES)}")
    merged = copy.deepcopy(PROFILES[profile])
    _deep_merge(merged, explicit)
    sources = {**_leaf_sources(PROFILES[profile], f"profile {profile!r} defaults"), **sources}

    try:
        return Settings.model_validate_json(json.dumps(merged), strict=True)
    except ValidationError as error:
        raise ConfigError(_describe(error, sources)) from None


def _env_layer(env: Mapping[str, str]) -> tuple[dict[str, Any], dict[Key, str]]:
    values: dict[str, Any] = {}
    sources: dict[Key, str] = {}

    def put(key: tuple[str, ...], value: Any, source: str) -> None:
        _deep_merge(values, _nest(key, value))
        sources[key] = source

    for name in sorted(env):
        if not name.startswith(ENV_PREFIX) or name == CONFIG_FILE_ENV or name in HTTP_ENV or env[name] == "":
            continue
        key = tuple(name[len(ENV_PREFIX) :].lower().split(ENV_NESTING))
        source = f"environment variable {name}"
        annotation = _annotation_at(key)
        if annotation is None:
            raise ConfigError(f"config error in {source}: unknown key {_dotted(key)!r}")
        put(key, _typed_env_value(env[name], annotation), source)

    for name, field in NOTIFIER_ENV.items():
        if env.get(name):
            put(("notifier", field), env[name], f"environment variable {name}")

    accounts_file = env.get(ACCOUNTS_FILE_ENV)
    try:
        single = account_from_env(env)
    except ValueError as problem:
        raise ConfigError(f"config error in the environment: {problem}") from None
    if accounts_file and single is not None:
        raise ConfigError(
            f"config error in the environment: set {ACCOUNTS_FILE_ENV} or KIS_APP_KEY, not both"
        )
    if accounts_file:
        source = f"accounts file {accounts_file} ({ACCOUNTS_FILE_ENV})"
        try:
            accounts = accounts_from_document(_read_json(Path(accounts_file), source))
        except ValueError as problem:
            raise ConfigError(f"config error in {source}: {problem}") from None
        put(("accounts",), accounts, source)
    elif single is not None:
        names = "/".join(name for name in ACCOUNT_ENV if env.get(name))
        put(("accounts",), [single], f"environment variables {names}")
    return values, sources


def _read_json(path: Path, what: str) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config error: {what} does not exist") from None
    except IsADirectoryError:
        raise ConfigError(f"config error: {what} is a directory, not a file") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config error in {what}: not UTF-8 text") from None
    except OSError as problem:
        raise ConfigError(f"config error: {what} cannot be read ({problem.strerror})") from None
    try:
        return json.loads(text, object_pairs_hook=_no_duplicate_keys)
    except json.JSONDecodeError as problem:
        place = f"line {problem.lineno} column {problem.colno}"
        raise ConfigError(f"config error in {what}: not valid JSON ({problem.msg} at {place})") from None
    except RecursionError:
        raise ConfigError(f"config error in {what}: not valid JSON (nested too deeply)") from None
    except ValueError as problem:
        raise ConfigError(f"config error in {what}: {problem}") from None


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"key {shown_key(key)} appears twice in one object")
        result[key] = value
    return result


def _annotation_at(key: Key) -> Any | None:
    """The type annotation of the setting at `key`, or None if no such setting exists."""
    model: type[BaseModel] = Settings
    for depth, part in enumerate(key):
        field = model.model_fields.get(str(part))
        if field is None:
            return None
        if depth == len(key) - 1:
            return field.annotation
        if not (isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)):
            return None
        model = field.annotation
    return None


def _fields_at(key: Key) -> list[str]:
    """Setting names allowed inside the section at `key` (for "did you mean"); list indexes are skipped."""
    fields_only = tuple(part for part in key if not isinstance(part, int))
    annotation = _annotation_at(fields_only) if fields_only else Settings
    if typing.get_origin(annotation) is tuple:
        annotation = typing.get_args(annotation)[0]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return list(annotation.model_fields)
    return []


def _typed_env_value(text: str, annotation: Any) -> Any:
    """Environment values are text; JSON-decode them unless the setting itself is text-like."""
    if _wants_text(annotation):
        return text
    candidate = text.strip()
    if candidate.lower() in ("true", "false"):
        candidate = candidate.lower()
    try:
        return json.loads(candidate)
    except ValueError:
        return text


def _wants_text(annotation: Any) -> bool:
    if annotation in (str, SecretStr, Path, time):
        return True
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return all(isinstance(option, str) for option in typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        return any(_wants_text(option) for option in typing.get_args(annotation) if option is not type(None))
    return False


def _describe(error: ValidationError, sources: Mapping[Key, str]) -> str:
    problems = error.errors(include_url=False, include_context=False)
    first = problems[0]
    key: Key = tuple(first["loc"])
    where = _source_of(key, sources)
    dotted = _dotted(key) or "(top level)"
    kind = first["type"]
    if kind == "extra_forbidden":
        if shown_key(str(key[-1])).startswith("'"):
            text = f"unknown key {dotted!r}"
            close = difflib.get_close_matches(str(key[-1]), _fields_at(key[:-1]), n=1)
            if close:
                text += f" (did you mean {close[0]!r}?)"
        else:
            place = f"in {_dotted(key[:-1])}" if key[:-1] else "at the top level"
            text = f"unknown key {place}: a key {shown_key(str(key[-1]))}"
    elif kind == "missing":
        text = f"{dotted}: required but missing"
    else:
        message = first["msg"].removeprefix("Value error, ")
        if kind.endswith("_type"):
            message += f" (got {_json_kind(first.get('input'))})"
        text = f"{dotted}: {message}"
    if len(problems) > 1:
        text += f" (and {len(problems) - 1} more problem{'s' if len(problems) > 2 else ''})"
    return f"config error in {where}: {text}".replace("\n", " ")


def _source_of(key: Key, sources: Mapping[Key, str]) -> str:
    for length in range(len(key), 0, -1):
        if key[:length] in sources:
            return sources[key[:length]]
    inside = [source for path, source in sources.items() if path[: len(key)] == key]
    return inside[-1] if inside else "the configuration"


def _leaf_sources(values: Mapping[str, Any], source: str, prefix: Key = ()) -> dict[Key, str]:
    found: dict[Key, str] = {}
    for name, value in values.items():
        key = (*prefix, name)
        if isinstance(value, Mapping) and value:
            found.update(_leaf_sources(value, source, key))
        else:
            found[key] = source
    return found


def _deep_merge(target: dict[str, Any], update: Mapping[str, Any]) -> None:
    for name, value in update.items():
        if isinstance(value, Mapping) and isinstance(target.get(name), dict):
            _deep_merge(target[name], value)
        else:
            target[name] = copy.deepcopy(value)


def _nest(key: tuple[str, ...], value: Any) -> dict[str, Any]:
    nested: Any = value
    for part in reversed(key):
        nested = {part: nested}
    return nested


def _plain(value: Any) -> Any:
    """Command-line values as JSON-ready data (paths and times become text)."""
    if isinstance(value, Mapping):
        return {key: _plain(inner) for key, inner in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(inner) for inner in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, time):
        return value.isoformat()
    return value


def _dotted(key: Key) -> str:
    text = ""
    for part in key:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _json_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "true/false"
    if value is None:
        return "null"
    kinds = {str: "text", int: "an integer", float: "a number", list: "an array", dict: "an object"}
    return kinds.get(type(value), type(value).__name__)
