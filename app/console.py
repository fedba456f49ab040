"""The operator console: `streamlit run app/console.py` (or `flywheel console`).

Page config, the password gate (when FLYWHEEL_CONSOLE_PASSWORD is set), the operator's name in the sidebar,
then the pages. The Teleop / Live page is listed when `app/views/live.py` exists.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE.parent) not in sys.path:  # this checkout's `app` and `flywheel`, whatever the venv points at
    sys.path.insert(0, str(HERE.parent))

import streamlit as st  # noqa: E402

from app.common import get_store, operator_sidebar, password_gate, settings  # noqa: E402
from flywheel.errors import FlywheelError  # noqa: E402

PAGES = (
    ("views/live.py", "Teleop / Live", ":material/sports_esports:"),
    ("views/episodes.py", "Episodes", ":material/movie:"),
    ("views/review.py", "Review & label", ":material/rate_review:"),
    ("views/dashboards.py", "Dashboards", ":material/monitoring:"),
    ("views/policies.py", "Policies", ":material/account_tree:"),
    ("views/jobs.py", "Jobs", ":material/schedule:"),
)


def pages() -> list[st.Page]:
    return [st.Page(path, title=title, icon=icon) for path, title, icon in PAGES if (HERE / path).is_file()]


def main() -> None:
    st.set_page_config(page_title="flywheel console", page_icon="🌀", layout="wide")
    try:
        settings()
    except FlywheelError as exc:
        st.error(f"The console cannot start: {exc}")
        st.stop()
    password_gate()
    try:
        store = get_store()
    except FlywheelError as exc:
        st.error(f"The console cannot open the store: {exc}")
        st.stop()
    operator_sidebar()
    st.sidebar.caption(f"database: `{store.db.safe_url}`")
    st.navigation(pages()).run()


main()
