"""Assertions several test modules share (imported as ``tests.helpers``; conftest puts
the repository root on the path)."""

from __future__ import annotations

from typing import Any


def one_line_error(capsys: Any) -> str:
    """What the command printed on stderr, asserted to be one ``error: ...`` line with no
    traceback: the form of every mistake a person can make."""
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: "), err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err
