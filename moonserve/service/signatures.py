"""Signatures on the reasoning that the Anthropic protocol hands out (`thinking` blocks), so that
reasoning a client sends back can be checked: a forged or edited block is refused, never fed to
the model as its own thought.

A signature is HMAC-SHA256 over the reasoning text with the server's signing key: the
`MOONSERVE_SIGNING_KEY` environment variable (set the same on every node behind one load
balancer), else a random key kept in MOONSERVE_HOME/signing.key (created on first use, mode 0600).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from pathlib import Path


class ReasoningSigner:
    def __init__(self, key: bytes):
        self._key = key

    def sign(self, reasoning: str) -> str:
        mac = hmac.new(self._key, reasoning.encode("utf-8"), hashlib.sha256).digest()
        return base64.b64encode(mac).decode()

    def verify(self, reasoning: str, signature: str) -> bool:
        return hmac.compare_digest(self.sign(reasoning), signature)


def load_signer(home: Path) -> ReasoningSigner:
    env = os.environ.get("MOONSERVE_SIGNING_KEY")
    if env:
        return ReasoningSigner(env.encode())
    path = home / "signing.key"
    if not path.exists():
        home.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
    return ReasoningSigner(path.read_text().strip().encode())
