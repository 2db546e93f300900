"""Operator configuration: environment variables plus an optional TOML file.

Precedence, lowest first: built-in defaults (`catalog/deployments.toml`), the config file given with
`--config` (or `MOONSERVE_CONFIG`), then environment variables for the few settings that have one.
"""

from __future__ import annotations

import os
import tomllib
from decimal import Decimal, InvalidOperation
from dataclasses import asdict, dataclass, field, fields
import types
from typing import ClassVar, Union, get_args, get_origin, get_type_hints
from pathlib import Path

import platformdirs


DEFAULT_REGION = "cn-beijing"


@dataclass
class Limits:
    rpm: int = 0  # 0: no limit
    tpm: int = 0


@dataclass
class LimitsConfig:
    key: Limits = field(default_factory=Limits)  # every key
    workspace: Limits = field(default_factory=Limits)  # every workspace
    workspaces: dict[str, Limits] = field(default_factory=dict)  # per-workspace overrides

    def for_workspace(self, workspace_id: str) -> Limits:
        return self.workspaces.get(workspace_id, self.workspace)

    @property
    def any(self) -> bool:
        return any(l.rpm or l.tpm for l in (self.key, self.workspace, *self.workspaces.values()))



class ConfigError(Exception):
    """The operator's configuration is wrong: said at start-up, never at request time."""


@dataclass
class DeploymentConfig:
    """What every deployment says, whatever its engine: how its model's output reads, and what one
    call may take. Each engine's own settings extend it in the engine's folder
    (engines/<engine>/settings.py); until `engines.resolve` reads them, they wait in `own`."""

    name: str
    engine: str = "embedded"
    max_waiting: int | None = None  # queued requests beyond the running ones; None: the engine's default
    # How the model thinks and calls tools (see docs/configuration.md):
    thinking_variable: str = "enable_thinking"  # template variable that switches thinking ("thinking" for Kimi K2.5+)
    reasoning_parser: str = "none"  # "think": the model writes <think>…</think>; "none": it never reasons
    tool_parser: str = "none"  # "kimi_k2", "hermes" (Qwen), or "none" (tools are refused)
    # What these weights need (see docs/configuration.md). The Kimi cards' fixed
    # sampling belongs to the Kimi weights; other weights may declare their own, used instead.
    temperature: float | None = None
    top_p: float | None = None
    # The most tokens one call may generate (reasoning and answer), whatever it asks for: coding agents
    # ask for 32,000, which a small model on a CPU takes minutes to write. None: up to the context.
    max_output_tokens: int | None = None
    own: dict = field(default_factory=dict, repr=False)  # the engine's own settings, as written

    CHOICES: ClassVar[dict[str, tuple[str, ...]]] = {
        "reasoning_parser": ("none", "think"),
        "tool_parser": ("none", "kimi_k2", "hermes"),
    }

    @property
    def thinks(self) -> bool:
        """Whether these weights write reasoning."""
        return self.reasoning_parser != "none"

    @property
    def calls_tools(self) -> bool:
        """Whether these weights call tools that Moonserve can parse."""
        return self.tool_parser != "none"

    @property
    def settings(self) -> dict:
        """Every setting as written: the shared ones and the engine's own."""
        values = {k: v for k, v in asdict(self).items() if k not in ("name", "own")}
        return {**values, **self.own}

    @classmethod
    def from_dict(cls, name: str, data: dict) -> "DeploymentConfig":
        """The shared settings, checked; with `cls` an engine's own class, all of them (an unknown one
        is an error there)."""
        known = {f.name for f in fields(cls)} - {"own", "name"}
        shared = {k: v for k, v in data.items() if k in known}
        own = {k: v for k, v in data.items() if k not in known}
        where = f"deployment {name!r}"
        if own and cls is not DeploymentConfig:
            raise ConfigError(f"{where}: unknown setting(s) {sorted(own)} for the {data.get('engine')} engine")
        check_settings(cls, where, shared)
        return cls(name=name, **shared, own=own)


def check_settings(cls, where: str, data: dict) -> None:
    """Each value's type and, where `cls.CHOICES` names them, its allowed values (a ConfigError)."""
    hints = get_type_hints(cls)
    for key, value in data.items():
        expected = _plain_types(hints[key])
        if not _fits(value, expected):
            kinds = " or ".join(t.__name__ for t in expected if t is not type(None))
            raise ConfigError(f"{where}: {key} must be {kinds}, not {value!r}")
    for key, allowed in cls.CHOICES.items():
        if key in data and data[key] not in allowed:
            raise ConfigError(f"{where}: {key} must be one of {list(allowed)}, not {data[key]!r}")


def _plain_types(hint) -> tuple[type, ...]:
    """`int | None` -> (int, NoneType); `bool` -> (bool,)."""
    if get_origin(hint) in (Union, types.UnionType):
        return get_args(hint)
    return (hint,)


def _fits(value, expected: tuple[type, ...]) -> bool:
    if value is None:  # only a default can be None (TOML has no null)
        return type(None) in expected
    if isinstance(value, bool):  # a bool is an int to Python, never to an operator
        return bool in expected
    if isinstance(value, int) and float in expected:
        return True
    return isinstance(value, expected)


@dataclass
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8000
    region: str = DEFAULT_REGION
    # On the first run, activate every catalog model for the default workspace (and say so).
    bootstrap_activation: bool = True
    # On SIGTERM: running calls get this long to finish before they are ended with a 503.
    shutdown_grace_seconds: float = 30.0


@dataclass
class MediaConfig:
    allow_hosts: list[str] = field(default_factory=list)  # host names fetched even if they resolve privately
    connect_timeout: float = 5.0
    read_timeout: float = 15.0
    total_timeout: float = 60.0
    max_redirects: int = 5
    max_video_frames: int = 64


@dataclass
class BillingConfig:
    currency: str = "CNY"
    ledger: bool = True  # one usage record per authenticated call (off only to measure its cost)


@dataclass
class ResponsesConfig:
    """Stored responses of the OpenAI Responses protocol (`store`, `previous_response_id`)."""
    retention_days: float = 30.0  # a stored response is gone this long after it was created


@dataclass
class Config:
    home: Path
    database_url: str
    server: ServerConfig = field(default_factory=ServerConfig)
    deployments: dict[str, DeploymentConfig] = field(default_factory=dict)
    # public model id -> its deployments, in order of preference (the first healthy one serves)
    routes: dict[str, tuple[str, ...]] = field(default_factory=dict)
    billing: BillingConfig = field(default_factory=BillingConfig)
    prices: dict[str, dict] = field(default_factory=dict)  # model id -> {"input": ..., "output": ...}
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    media: MediaConfig = field(default_factory=MediaConfig)
    responses: ResponsesConfig = field(default_factory=ResponsesConfig)

    @property
    def served(self) -> list[str]:
        """The deployments that some public model id routes to."""
        return sorted({name for names in self.routes.values() for name in names})

    @property
    def models_dir(self) -> Path:
        return self.home / "models"


def default_home() -> Path:
    env = os.environ.get("MOONSERVE_HOME")
    return Path(env).expanduser() if env else Path(platformdirs.user_data_dir("moonserve"))


def _read_toml(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path}: {exc}") from None


def load_config(path: str | os.PathLike | None = None) -> Config:
    home = default_home()
    builtin = _read_toml(Path(__file__).parent / "catalog" / "deployments.toml")
    path = path or os.environ.get("MOONSERVE_CONFIG")
    operator = _read_toml(Path(path)) if path else {}

    unknown = set(operator) - {"server", "deployments", "models", "database_url", "home", "billing", "prices",
                               "limits", "media", "responses"}
    if unknown:
        raise ConfigError(f"config file: unknown section(s) {sorted(unknown)}")
    if "home" in operator:
        home = Path(operator["home"]).expanduser()

    server_data = operator.get("server", {})
    server_fields = {f.name for f in fields(ServerConfig)}
    if set(server_data) - server_fields:
        raise ConfigError(f"[server]: unknown setting(s) {sorted(set(server_data) - server_fields)}")
    server = ServerConfig(**server_data)
    if os.environ.get("MOONSERVE_REGION"):
        server.region = os.environ["MOONSERVE_REGION"]

    deployments: dict[str, DeploymentConfig] = {}
    for name, data in builtin["deployments"].items():
        deployments[name] = DeploymentConfig.from_dict(name, dict(data))
    for name, data in operator.get("deployments", {}).items():
        base = deployments[name].settings if name in deployments else {}
        if "engine" in data and data["engine"] != base.get("engine"):  # another engine: only the shared settings apply
            shared = {f.name for f in fields(DeploymentConfig)}
            base = {k: v for k, v in base.items() if k in shared}
        deployments[name] = DeploymentConfig.from_dict(name, {**base, **data})

    routes = {model_id: (name,) for model_id, name in builtin["routes"].items()}
    for model_id, data in operator.get("models", {}).items():
        if model_id not in routes:
            raise ConfigError(
                f"[models.{model_id!r}]: not a public model id; the ids are {sorted(routes)}"
            )
        if set(data) - {"deployment"}:
            raise ConfigError(
                f"[models.{model_id!r}]: only `deployment` can be set; a model's rules and prices are fixed"
            )
        chosen = data["deployment"]
        routes[model_id] = (chosen,) if isinstance(chosen, str) else tuple(chosen)
        if not routes[model_id] or not all(isinstance(d, str) for d in routes[model_id]):
            raise ConfigError(f"[models.{model_id!r}].deployment: a deployment name, or a list of them in "
                              "order of preference")
    for model_id, names in routes.items():
        for dep in names:
            if dep not in deployments:
                raise ConfigError(f"model {model_id!r} routes to unknown deployment {dep!r}")

    database_url = (
        os.environ.get("MOONSERVE_DATABASE_URL")
        or operator.get("database_url")
        or f"sqlite:///{home / 'moonserve.db'}"
    )
    return Config(home=home, database_url=database_url, server=server, deployments=deployments, routes=routes,
                  billing=_section(BillingConfig, "billing", operator), prices=_prices(operator.get("prices", {}), routes),
                  limits=_limits(operator.get("limits", {})), media=_section(MediaConfig, "media", operator),
                  responses=_section(ResponsesConfig, "responses", operator))


def _section(cls, name: str, operator: dict):
    """A flat section of plain settings: `[name]` in the operator's file, as `cls`."""
    data = operator.get(name, {})
    known = {f.name for f in fields(cls)}
    if set(data) - known:
        raise ConfigError(f"[{name}]: unknown setting(s) {sorted(set(data) - known)}")
    return cls(**data)


def _prices(data: dict, routes: dict) -> dict[str, dict]:
    for model_id, p in data.items():
        if model_id not in routes:
            raise ConfigError(f"[prices.{model_id!r}]: not a public model id")
        if set(p) - {"input", "output"}:
            raise ConfigError(f"[prices.{model_id!r}]: only input and output (per million tokens) can be set")
        for k, v in p.items():
            try:
                if Decimal(str(v)) < 0:
                    raise InvalidOperation
            except InvalidOperation:
                raise ConfigError(f"[prices.{model_id!r}].{k}: not a price: {v!r}") from None
    return data


def _limits(data: dict) -> LimitsConfig:
    def limits(d: dict, where: str) -> Limits:
        if set(d) - {"rpm", "tpm"}:
            raise ConfigError(f"{where}: only rpm and tpm can be set")
        return Limits(rpm=int(d.get("rpm", 0)), tpm=int(d.get("tpm", 0)))

    if set(data) - {"key", "workspace", "workspaces"}:
        raise ConfigError(f"[limits]: unknown setting(s) {sorted(set(data) - {'key', 'workspace', 'workspaces'})}")
    return LimitsConfig(
        key=limits(data.get("key", {}), "[limits.key]"),
        workspace=limits(data.get("workspace", {}), "[limits.workspace]"),
        workspaces={w: limits(d, f"[limits.workspaces.{w}]") for w, d in data.get("workspaces", {}).items()},
    )


__all__ = ["Config", "ConfigError", "DeploymentConfig", "ServerConfig", "load_config"]
