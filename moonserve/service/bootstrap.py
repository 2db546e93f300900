"""The first run: a fresh store gets the default workspace, one API key (shown once), and, unless
the operator turned it off, every catalog model activated for that workspace.

Activation stays real: other workspaces start with nothing activated, and `moonserve models
deactivate` takes a model away from the default workspace too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..accounts.store import DEFAULT_WORKSPACE, ApiKey, Store
from ..catalog import cards
from ..config import Config

if TYPE_CHECKING:
    from ..accounts.console_users import ConsoleUsers


@dataclass
class FirstRun:
    key: ApiKey
    secret: str
    activated: list[str]


def first_run(store: Store, config: Config) -> FirstRun | None:
    if not store.ensure_workspace(DEFAULT_WORKSPACE):
        return None
    key, secret = store.create_key(DEFAULT_WORKSPACE, config.server.region)
    activated = []
    if config.server.bootstrap_activation:
        for model_id in cards():
            store.activate(DEFAULT_WORKSPACE, model_id)
            activated.append(model_id)
    return FirstRun(key=key, secret=secret, activated=activated)


def console_owner(users: "ConsoleUsers") -> tuple[str, str] | None:
    """The console's first owner, when there is none yet: its username and a password shown once."""
    from ..accounts.console_users import new_password

    if users.any_owner():
        return None
    password = new_password()
    users.add("admin", password, "owner", DEFAULT_WORKSPACE)
    return "admin", password
