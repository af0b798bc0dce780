"""TLS and basic auth for /metrics, from a Prometheus-style web config file.

The format is the one Prometheus and its exporters read (exporter-toolkit), so one file works for
all of them::

    tls_server_config:
      cert_file: /etc/letta-exporter/tls.crt
      key_file: /etc/letta-exporter/tls.key
    basic_auth_users:
      prometheus: $2y$10$...   # bcrypt hash, e.g. from `htpasswd -nBC 10 "" | tr -d ':\\n'`
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bcrypt
import yaml

from exporter.config import ConfigError

SETTING = "LETTA_EXPORTER_WEB_CONFIG_FILE"


@dataclass(frozen=True)
class WebConfig:
    cert_file: Path | None = None
    key_file: Path | None = None
    users: dict[str, bytes] = field(default_factory=dict)

    @property
    def tls(self) -> bool:
        return self.cert_file is not None

    def ssl_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(str(self.cert_file), str(self.key_file))
        return context


def _fail(path: Path, message: str) -> ConfigError:
    return ConfigError(f"invalid setting {SETTING} ({path}): {message}")


def load_web_config(path: Path) -> WebConfig:
    """Read and check the whole file at start-up, so a mistake stops the exporter with one line."""
    try:
        raw: Any = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise _fail(path, f"cannot read ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise _fail(path, f"not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(raw, dict):
        raise _fail(path, "expected a mapping at the top level")
    unknown = set(raw) - {"tls_server_config", "basic_auth_users", "http_server_config"}
    if unknown:
        raise _fail(path, f"unknown key {sorted(unknown)[0]!r}")

    cert_file = key_file = None
    tls = raw.get("tls_server_config")
    if tls is not None:
        if not isinstance(tls, dict) or not tls.get("cert_file") or not tls.get("key_file"):
            raise _fail(path, "tls_server_config needs cert_file and key_file")
        cert_file = (path.parent / str(tls["cert_file"])).resolve()
        key_file = (path.parent / str(tls["key_file"])).resolve()

    users: dict[str, bytes] = {}
    for user, hashed in (raw.get("basic_auth_users") or {}).items():
        hashed_bytes = str(hashed).encode()
        if not hashed_bytes.startswith((b"$2a$", b"$2b$", b"$2y$")):
            raise _fail(path, f"basic_auth_users.{user}: expected a bcrypt hash, not a plain password")
        users[str(user)] = hashed_bytes

    config = WebConfig(cert_file, key_file, users)
    if config.tls:
        try:
            config.ssl_context()
        except (OSError, ssl.SSLError) as exc:
            raise _fail(path, f"cannot load the TLS certificate or key ({exc})") from None
    return config


class BasicAuth:
    """Checks ``Authorization: Basic`` against bcrypt hashes. bcrypt is slow by design (~0.1 s), so
    credentials that passed once are remembered by a keyed digest, as exporter-toolkit does."""

    def __init__(self, users: dict[str, bytes]) -> None:
        self.users = users
        self._verified: set[bytes] = set()  # shared by the server's threads: `in` and add are atomic
        self._key = hashlib.sha256(b"".join(sorted(users.values()))).digest()

    def check(self, header: str | None) -> bool:
        if not header or not header.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:], validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        hashed = self.users.get(user)
        if hashed is None:
            bcrypt.checkpw(password.encode(), _dummy_hash())  # same cost for unknown users: no user oracle
            return False
        digest = hmac.new(self._key, f"{user}:{password}".encode(), hashlib.sha256).digest()
        if digest in self._verified:
            return True
        if not bcrypt.checkpw(password.encode(), hashed):
            return False
        self._verified.add(digest)
        return True


@functools.cache
def _dummy_hash() -> bytes:
    """Made on first use, not at import: bcrypt costs a tenth of a second by design."""
    return bcrypt.hashpw(b"dummy", bcrypt.gensalt(rounds=10))
