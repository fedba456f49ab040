"""The console takes only valid operator names and shows names from the database as plain text."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from app.common import md_escape

NAME_SCRIPT = """
import streamlit as st
from app.common import current_operator, operator_sidebar
operator_sidebar()
st.markdown(f"operator={current_operator()}")
"""
ATTACK = "![x](https://attacker.example/x.png) **[click](https://a.ex)**"  # within max_chars


@pytest.fixture(autouse=True)
def _home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("FLYWHEEL_DB_URL", "FLYWHEEL_CONFIG", "FLYWHEEL_OPERATOR", "FLYWHEEL_CONSOLE_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("FLYWHEEL_HOME", str(tmp_path / "home"))


def test_the_sidebar_refuses_a_markup_operator_name() -> None:
    at = AppTest.from_string(NAME_SCRIPT, default_timeout=30).run()
    at.sidebar.text_input[0].input(ATTACK).run()
    assert [m.value for m in at.markdown] == ["operator=None"]
    assert "Not a usable operator name" in at.sidebar.error[0].value
    at.sidebar.text_input[0].input("erin_2").run()
    assert [m.value for m in at.markdown] == ["operator=erin_2"] and not at.sidebar.error


def test_md_escape_leaves_no_markdown_active() -> None:
    escaped = md_escape(ATTACK + "\n# heading")
    assert "\n" not in escaped
    # Every markdown-active character is backslash-escaped; letters and digits are untouched.
    for char in "![]()*#:":
        assert all(escaped[i - 1] == "\\" for i, c in enumerate(escaped) if c == char)
    assert md_escape("ann_2") == "ann\\_2" and md_escape("carol") == "carol"
