"""Log lines never carry the API key: not in a message, its arguments, a traceback or an extra field."""

from __future__ import annotations

import json
import logging

import pytest

from exporter.logsetup import configure_logging

SECRET = 'sk-let-"quoted"-0123456789'  # the quotes are escaped in a JSON line


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_the_key_is_replaced_wherever_it_appears(fmt: str, capsys) -> None:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        configure_logging("info", fmt, [SECRET, ""])
        log = logging.getLogger("exporter.test")
        log.warning("upstream said %s", f"bad key {SECRET}", extra={"body": SECRET})
        try:
            raise ValueError(f"echoed {SECRET}")
        except ValueError:
            log.exception("request failed")
        log.info("nothing secret here")
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    err = capsys.readouterr().err
    assert SECRET not in err and json.dumps(SECRET)[1:-1] not in err and "0123456789" not in err
    assert "upstream said bad key ***" in err and "ValueError: echoed ***" in err.replace("\\n", "\n")
    assert "nothing secret here" in err
    if fmt == "json":
        first = json.loads(err.splitlines()[0])
        assert (first["msg"], first["body"]) == ("upstream said bad key ***", "***")
