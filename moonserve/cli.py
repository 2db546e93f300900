"""The `moonserve` command: serve, keys, models."""

from __future__ import annotations

import json
import logging
import sys
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape

from .accounts.store import DEFAULT_WORKSPACE, NotFound, Store
from .catalog import cards
from .cli_tables import print_table
from .config import Config, ConfigError, load_config
from .engines import resolve

app = typer.Typer(help="Moonserve: the Model Studio Kimi API, served on your own machines.", no_args_is_help=True)
keys_app = typer.Typer(help="API keys: create, list, revoke.", no_args_is_help=True)
models_app = typer.Typer(help="Public model ids and their activation per workspace.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
users_app = typer.Typer(help="Console users: add, list, passwd, remove.", no_args_is_help=True)
app.add_typer(models_app, name="models")
app.add_typer(users_app, name="users")

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

ConfigOpt = typer.Option(None, "--config", "-c", help="Operator config file (TOML). Env: MOONSERVE_CONFIG.")
JsonOpt = typer.Option(False, "--json", help="Print JSON.")
WorkspaceOpt = typer.Option(DEFAULT_WORKSPACE, "--workspace", "-w", help="Workspace id.")


def _config(path: Optional[str]) -> Config:
    try:
        return resolve(load_config(path))
    except ConfigError as exc:
        err.print(f"[red]config error:[/red] {escape(str(exc))}")
        raise typer.Exit(2)


def _store(cfg: Config) -> Store:
    store = Store(cfg.database_url)
    store.migrate()
    return store


def _print_json(data) -> None:
    sys.stdout.write(json.dumps(data, indent=2) + "\n")


@app.command()
def serve(
    host: Optional[str] = typer.Option(None, help="Address to bind (config: server.host; default 127.0.0.1)."),
    port: Optional[int] = typer.Option(None, help="Port (config: server.port; default 8000)."),
    config: Optional[str] = ConfigOpt,
    access_log: bool = typer.Option(False, "--access-log", help="Log every HTTP request."),
):
    """Start the HTTP server. The first run creates the default workspace and prints an API key."""
    from .app import create_app
    from .api.server import run
    from .service.bootstrap import FirstRun

    cfg = _config(config)
    host = host or cfg.server.host
    port = port if port is not None else cfg.server.port
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # httpx logs every request's URL at INFO: media URLs, query strings (signed tokens) and all.
    logging.getLogger("httpx").setLevel(logging.WARNING)

    def announce(fr: FirstRun) -> None:
        out.print("[bold]First run:[/bold] created workspace [cyan]default[/cyan] and this API key "
                  "(shown once, only its hash is stored):")
        out.print(f"\n    MOONSERVE_API_KEY={fr.secret}\n", highlight=False, soft_wrap=True)
        if fr.activated:
            out.print("Activated for workspace default: " + ", ".join(fr.activated) +
                      "\n(turn this off with server.bootstrap_activation = false; "
                      "undo with `moonserve models deactivate MODEL`)")
        sys.stdout.flush()

    out.print(f"Moonserve: state in {cfg.home}, database {cfg.database_url.split('://')[0]}, "
              f"region {cfg.server.region}")
    _fetch_weights(cfg)
    out.print(f"Serving on http://{host}:{port}/compatible-mode/v1 (loading models...)")
    sys.stdout.flush()
    def announce_owner(username: str, password: str) -> None:
        out.print(f"[bold]Console:[/bold] http://{host}:{port}/console — sign in as [cyan]{username}[/cyan] with "
                  "this password (shown once; change it with `moonserve users passwd`):")
        out.print(f"\n    MOONSERVE_CONSOLE_PASSWORD={password}\n", highlight=False, soft_wrap=True)
        sys.stdout.flush()

    app_ = create_app(cfg, on_first_run=announce, on_console_owner=announce_owner)
    run(app_, host=host, port=port, access_log=access_log, grace=cfg.server.shutdown_grace_seconds)


@keys_app.command("create")
def keys_create(
    workspace: str = WorkspaceOpt,
    region: Optional[str] = typer.Option(None, help="Region the key is valid in (default: the server's)."),
    config: Optional[str] = ConfigOpt,
    as_json: bool = JsonOpt,
):
    """Create an API key. The key is printed once; only its hash is stored."""
    cfg = _config(config)
    key, secret = _store(cfg).create_key(workspace, region or cfg.server.region)
    if as_json:
        _print_json({**key.as_json(), "key": secret})
    else:
        out.print(f"Created {key.id} for workspace {workspace} (region {key.region}). The key, shown once:")
        out.print(secret, highlight=False, soft_wrap=True)


@keys_app.command("list")
def keys_list(
    workspace: Optional[str] = typer.Option(None, "--workspace", "-w", help="Only this workspace."),
    config: Optional[str] = ConfigOpt,
    as_json: bool = JsonOpt,
):
    """List API keys (never the keys themselves)."""
    keys = _store(_config(config)).list_keys(workspace)
    if as_json:
        _print_json([k.as_json() for k in keys])
        return
    print_table(out, ["id", "workspace", "region", "key", "created", "last used", "revoked"],
                [[k.id, k.workspace_id, k.region, k.hint, _short(k.created_at), _short(k.last_used_at),
                  _short(k.revoked_at)] for k in keys])


def _users(config: Optional[str]):
    from .accounts.console_users import ConsoleUsers

    return ConsoleUsers(_store(_config(config)).engine)


@users_app.command("add")
def users_add(
    username: str,
    role: str = typer.Option("member", help="owner (every workspace, console users) or member (its workspace)."),
    workspace: str = WorkspaceOpt,
    config: Optional[str] = ConfigOpt,
):
    """Add a console user; prints a generated password once."""
    from .accounts.console_users import UserError, new_password

    password = new_password()
    store = _store(_config(config))
    store.ensure_workspace(workspace)
    try:
        _users(config).add(username, password, role, workspace)
    except UserError as exc:
        err.print(f"[red]{escape(str(exc))}[/red]")
        raise typer.Exit(1)
    out.print(f"Added {role} {username} (workspace {workspace}). Password, shown once:")
    out.print(f"\n    {password}\n", highlight=False, soft_wrap=True)


@users_app.command("list")
def users_list(config: Optional[str] = ConfigOpt, as_json: bool = JsonOpt):
    """Console users (never their passwords)."""
    users = _users(config).list()
    if as_json:
        _print_json([{"username": u.username, "role": u.role, "workspace": u.workspace_id} for u in users])
        return
    print_table(out, ["username", "role", "workspace"], [[u.username, u.role, u.workspace_id or "-"] for u in users])


@users_app.command("passwd")
def users_passwd(username: str, config: Optional[str] = ConfigOpt):
    """Give a user a new generated password (printed once); signs it out everywhere."""
    from .accounts.console_users import UserError, new_password

    password = new_password()
    try:
        _users(config).set_password(username, password)
    except UserError as exc:
        err.print(f"[red]{escape(str(exc))}[/red]")
        raise typer.Exit(1)
    out.print(f"New password for {username}, shown once:\n\n    {password}\n", highlight=False, soft_wrap=True)


@users_app.command("remove")
def users_remove(username: str, config: Optional[str] = ConfigOpt):
    """Remove a console user and its sessions."""
    if not _users(config).remove(username):
        err.print(f"[red]no user {escape(username)!r}[/red]")
        raise typer.Exit(1)
    out.print(f"Removed {username}.")


@keys_app.command("revoke")
def keys_revoke(key_id: str, config: Optional[str] = ConfigOpt, as_json: bool = JsonOpt):
    """Revoke a key. Takes effect at once on every server sharing the database."""
    try:
        key = _store(_config(config)).revoke_key(key_id)
    except NotFound as exc:
        err.print(f"[red]{escape(str(exc))}[/red]")
        raise typer.Exit(1)
    if as_json:
        _print_json(key.as_json())
    else:
        out.print(f"Revoked {key.id}.")


@models_app.command("list")
def models_list(workspace: str = WorkspaceOpt, config: Optional[str] = ConfigOpt, as_json: bool = JsonOpt):
    """The public model ids, their deployment, and whether the workspace activated them."""
    cfg = _config(config)
    active = _store(cfg).activated_models(workspace)
    rows = []
    for c in cards().values():
        d = cfg.deployments[cfg.routes[c.id][0]]
        # the sampling a call gets: the deployment's own where it declares it, else the card's
        thinking_t = d.temperature if d.temperature is not None else c.temperature(True)
        plain_t = d.temperature if d.temperature is not None else c.temperature(False)
        rows.append({
            "id": c.id,
            "thinking": "thinking-only" if c.thinking_only else "hybrid",
            "deployment": ", ".join(cfg.routes[c.id]),
            "engine": d.engine,
            "sampling": {"from": "deployment" if d.temperature is not None or d.top_p is not None else "model card",
                         "temperature_thinking": thinking_t,
                         "temperature_non_thinking": None if c.thinking_only else plain_t,
                         "top_p": d.top_p if d.top_p is not None else c.top_p},
            "max_output_tokens": d.max_output_tokens,
            "activated": c.id in active,
        })
    if as_json:
        _print_json(rows)
        return
    cells = []
    for r in rows:
        sp = r["sampling"]
        temps = f"{sp['temperature_thinking']:g}" + ("" if sp["temperature_non_thinking"] is None or
                                                      sp["temperature_non_thinking"] == sp["temperature_thinking"]
                                                      else f" / {sp['temperature_non_thinking']:g}")
        cells.append([r["id"], r["thinking"], r["deployment"], r["engine"],
                      f"T {temps}, top_p {sp['top_p']:g} ({sp['from']})",
                      str(r["max_output_tokens"] or "context"), "yes" if r["activated"] else "no"])
    print_table(out, ["model", "thinking", "deployment", "engine", "sampling", "max output",
                      f"activated ({workspace})"], cells)


def _known_model(model: str) -> str:
    if model not in cards():
        err.print(f"[red]unknown model {escape(repr(model))}[/red]; the ids are: {', '.join(cards())}")
        raise typer.Exit(1)
    return model


@models_app.command("activate")
def models_activate(
    model: str,
    workspace: str = WorkspaceOpt,
    yes: bool = typer.Option(False, "--yes", "-y", help="Skip the confirmation."),
    config: Optional[str] = ConfigOpt,
    as_json: bool = JsonOpt,
):
    """Activate a model for a workspace (Model Studio's "Activate Now")."""
    _known_model(model)
    if not yes and sys.stdin.isatty():
        typer.confirm(f"Activate {model} for workspace {workspace}? Calls to it will be billed", abort=True)
    changed = _store(_config(config)).activate(workspace, model)
    if as_json:
        _print_json({"model": model, "workspace": workspace, "activated": True, "changed": changed})
    else:
        out.print(f"{model} is activated for workspace {workspace}" + ("." if changed else " (already was)."))


@models_app.command("deactivate")
def models_deactivate(model: str, workspace: str = WorkspaceOpt, config: Optional[str] = ConfigOpt,
                      as_json: bool = JsonOpt):
    """Deactivate a model for a workspace: its calls then answer 403."""
    _known_model(model)
    changed = _store(_config(config)).deactivate(workspace, model)
    if as_json:
        _print_json({"model": model, "workspace": workspace, "activated": False, "changed": changed})
    else:
        out.print(f"{model} is deactivated for workspace {workspace}" + ("." if changed else " (was not active)."))


def _fetch_weights(cfg: Config) -> None:
    """Resolve (and download, with a progress bar) every served deployment's weights up front, so
    that a missing file is one clear line, not a failed start-up."""
    from .engines.embedded.weights import WeightsNotFound, resolve_weights

    for name in cfg.served:
        d = cfg.deployments[name]
        if d.engine == "embedded":
            try:
                resolve_weights(d.model, cfg.models_dir)
                if d.mmproj:
                    resolve_weights(d.mmproj, cfg.models_dir)
            except WeightsNotFound as exc:
                err.print(f"[red]deployment {name}:[/red] {escape(str(exc))}")
                raise typer.Exit(2)


@app.command()
def usage(
    workspace: Optional[str] = typer.Option(None, "--workspace", "-w", help="Only this workspace."),
    since: Optional[str] = typer.Option(None, help="ISO-8601 date/time (UTC), or a span: 30m, 24h, 7d."),
    by: str = typer.Option("model", help="Group by model, key, day or protocol."),
    config: Optional[str] = ConfigOpt,
    as_json: bool = JsonOpt,
):
    """Usage and cost from the ledger."""
    from .accounts.ledger import GROUPS, Ledger, parse_since

    if by not in GROUPS:
        err.print(f"--by must be one of {', '.join(GROUPS)}")
        raise typer.Exit(2)
    try:
        since_at = parse_since(since)
    except ValueError as exc:
        err.print(f"--since: {escape(str(exc))}")
        raise typer.Exit(2)
    cfg = _config(config)
    rows = Ledger(_store(cfg).engine).report(workspace, since_at, by)
    if as_json:
        _print_json({"workspace": workspace, "since": since, "by": by, "data": rows})
        return
    print_table(out, [by, "requests", "prompt", "cached", "completion", "reasoning", "cost", "currency"],
                [[str(r["group"]), str(r["requests"]), str(r["prompt_tokens"]), str(r["cached_tokens"]),
                  str(r["completion_tokens"]), str(r["reasoning_tokens"]), r["cost_total"], r["currency"]]
                 for r in rows])


def _short(t) -> str:
    return t.strftime("%Y-%m-%d %H:%M") if t else "-"
