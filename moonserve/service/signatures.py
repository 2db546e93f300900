"""Sealed reasoning: what a stateless client carries between turns so that the reasoning it sends
back can be checked, and recovered when the client kept none of its text.

Two protocols hand reasoning out this way: Anthropic's `thinking` blocks (their `signature`) and the
Responses API's reasoning items (their `encrypted_content`, asked for with
`include: ["reasoning.encrypted_content"]`, which is how Codex keeps its reasoning with `store:
false`). A seal holds the reasoning's text and an HMAC-SHA256 over it with the server's signing key,
so a forged or edited seal is refused, never fed to the model as its own thought, and a client that
shows no reasoning (Anthropic's `thinking.display = "omitted"`) can still send it back whole.

A seal is `ms1.<base64url text>.<base64url mac>`. Signatures handed out before seals existed (the
bare base64 MAC of the block's text) are still accepted for the text they were made for.

The key: the `MOONSERVE_SIGNING_KEY` environment variable (set the same on every node behind one load
balancer), else a random key kept in MOONSERVE_HOME/signing.key (created on first use, mode 0600).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
from pathlib import Path

PREFIX = "ms1."


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class ReasoningSigner:
    def __init__(self, key: bytes):
        self._key = key

    def _mac(self, data: bytes) -> bytes:
        return hmac.new(self._key, data, hashlib.sha256).digest()

    def seal(self, reasoning: str) -> str:
        """The reasoning, sealed: the text travels inside, with its MAC."""
        data = reasoning.encode("utf-8")
        return f"{PREFIX}{_b64(data)}.{_b64(self._mac(PREFIX.encode() + data))}"

    def open(self, seal: str, shown: str | None = None) -> str | None:
        """The reasoning that `seal` holds, or None if it is not a seal of this server's. `shown`:
        the text the client showed beside it (a thinking block's `thinking`); when not empty it must
        be the sealed text (a client may drop the text, never change it)."""
        if not isinstance(seal, str):
            return None
        if not seal.startswith(PREFIX):
            # a bare MAC of the text shown (signatures handed out before seals)
            if shown is not None and hmac.compare_digest(base64.b64encode(self._mac(shown.encode("utf-8"))).decode(),
                                                        seal):
                return shown
            return None
        try:
            text_part, mac_part = seal[len(PREFIX):].split(".")
            data, mac = _unb64(text_part), _unb64(mac_part)
            text = data.decode("utf-8")
        except (ValueError, binascii.Error, UnicodeDecodeError):
            return None
        if not hmac.compare_digest(self._mac(PREFIX.encode() + data), mac):
            return None
        if shown and shown != text:
            return None
        return text


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
