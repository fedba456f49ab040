"""Shared helpers for every console page: settings, cached services, operator identity, password, errors.

Pages import from here and nowhere else for these concerns:

- `settings()`: the validated `Settings` from `FLYWHEEL_*` (the `flywheel console` command passes
  `FLYWHEEL_HOME` / `FLYWHEEL_DB_URL` through the environment).
- `get_store()`, `get_registry()`, `get_review()`: one `EpisodeStore` (one DB engine), `PolicyRegistry` and
  `ReviewService` per database, shared by all sessions (`st.cache_resource`). Reads use the store's read
  sessions; writes go through the services, which use `Database.write()` (SQLite `BEGIN IMMEDIATE` plus a busy
  timeout: operators wait briefly instead of seeing "database is locked").
- `get_loaded_policy(version_id)`: verified policy weights, cached and shared; `policy_runner(...)` wraps them
  in a fresh `PolicyRunner` (it keeps per-episode state, so never share a runner between sessions).
- `current_operator()`, `operator_sidebar()`, `require_operator(action)`: who is acting; every write records
  it and pages refuse writes without it.
- `password_gate()`: when `FLYWHEEL_CONSOLE_PASSWORD` is set, nothing renders unless the browser signed in at the
  transport (`flywheel.console_auth.ConsoleGuard`; checked again here as defence in depth).
- `show_errors()`: a `with` block that turns a `FlywheelError` into `st.error(message)` instead of a traceback.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import streamlit as st

from flywheel.config import Settings, load_settings
from flywheel.console_auth import COOKIE_NAME, SIGNIN_PATH, SessionSigner
from flywheel.errors import FlywheelError
from flywheel.identity import NAME_RULE, UNKNOWN_OPERATOR, is_valid_name, process_identity
from flywheel.registry import PolicyRegistry
from flywheel.review import ReviewService, load_taxonomy
from flywheel.store import EpisodeStore

OPERATOR_KEY = "operator"  # session_state: the operator's name ("" or missing: nobody identified)
_OPERATOR_INPUT = "operator_input"
_MARKDOWN_PUNCTUATION = re.compile(r"([!-/:-@\[-`{-~])")


def settings() -> Settings:
    """Settings from the environment and config file (cheap; re-read each run so env changes apply)."""
    return load_settings()


@st.cache_resource(show_spinner=False)
def _open_store(settings_json: str) -> EpisodeStore:
    return EpisodeStore.open(Settings.model_validate_json(settings_json))


def get_store() -> EpisodeStore:
    """The episode store of the configured database (opened and migrated once per process)."""
    return _open_store(settings().model_dump_json())


def get_registry() -> PolicyRegistry:
    return PolicyRegistry(get_store().db)


@st.cache_resource(show_spinner=False)
def _review_service(settings_json: str) -> ReviewService:
    config = Settings.model_validate_json(settings_json)
    return ReviewService(_open_store(settings_json), load_taxonomy(config))


def get_review() -> ReviewService:
    """The review service, with the failure-mode taxonomy from `<home>/taxonomy.yaml` or the defaults."""
    return _review_service(settings().model_dump_json())


@st.cache_resource(show_spinner="loading policy…", max_entries=8)
def _load_policy(checkpoint_uri: str, sha256: str, device: str) -> Any:
    from flywheel.policy.loading import load_policy

    loaded = load_policy(checkpoint_uri, device, sha256 or None)
    loaded.policy.eval()
    return loaded


def get_loaded_policy(version_id: int, device: str = "cpu") -> Any:
    """A registered version's verified weights (`flywheel.policy.loading.LoadedPolicy`), cached per checkpoint."""
    version = get_registry().get(version_id)
    return _load_policy(version.checkpoint_uri, version.sha256, device)


def policy_runner(version_id: int, device: str = "cpu", **kwargs: Any) -> Any:
    """A fresh `PolicyRunner` over the cached weights (one per session or rollout: it holds episode state)."""
    from flywheel.policy.runner import PolicyRunner

    return PolicyRunner(get_loaded_policy(version_id, device), device=device, **kwargs)


# -- identity -----------------------------------------------------------------------------------------


def current_operator() -> str | None:
    """The operator's name for this browser session, or None when nobody (validly) identified."""
    name = str(st.session_state.get(OPERATOR_KEY) or "").strip()
    return name if is_valid_name(name) and name != UNKNOWN_OPERATOR else None


def recorded_by() -> str:
    """Who the machine says acts in this browser session (kept beside the typed name; `undo` matches it)."""
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    ctx = get_script_run_ctx()
    session = ctx.session_id if ctx is not None else "none"
    return f"console:{session} {process_identity()}"


def md_escape(text: object) -> str:
    """`text` for interpolation into Streamlit markdown: punctuation backslash-escaped, on one line, so a name
    from the database shows as typed and never as a link, an image or formatting."""
    return _MARKDOWN_PUNCTUATION.sub(r"\\\1", " ".join(str(text).split()))


def operator_sidebar() -> str | None:
    """The sidebar's "Operator name" field (prefilled from FLYWHEEL_OPERATOR when set); returns the name."""
    if _OPERATOR_INPUT not in st.session_state:  # first run of the session (or after another page dropped it)
        default = st.session_state.get(OPERATOR_KEY)
        if default is None:
            configured = settings().operator
            default = "" if configured == UNKNOWN_OPERATOR else configured
        st.session_state[_OPERATOR_INPUT] = default
    typed = st.sidebar.text_input(
        "Operator name",
        key=_OPERATOR_INPUT,
        max_chars=64,
        placeholder="who is at the console",
        help="Recorded with every label, takeover and promotion.",
    )
    st.session_state[OPERATOR_KEY] = typed.strip()
    name = current_operator()
    if typed.strip() and name is None:
        st.sidebar.error(f"Not a usable operator name: use {NAME_RULE}.")
    elif name is None:
        st.sidebar.caption("Enter your name to label, take over or promote.")
    return name


def require_operator(action: str) -> str | None:
    """The operator's name, or None after showing why `action` is disabled (pages keep rendering)."""
    name = current_operator()
    if name is None:
        st.warning(f"Enter your operator name in the sidebar to {action}: every change records who made it.")
    return name


# -- access -------------------------------------------------------------------------------------------


def password_gate() -> None:
    """When a console password is configured, stop the page unless this browser session carries the session
    cookie `ConsoleGuard` signed at sign-in (the guard already refused the WebSocket without it; this is the
    second check). There is no password form in the script: the only way in is the guard's throttled form.

    console.py calls it before any page, and every page calls it again, so a page file run on its own is gated
    too. The pages live in `app/views/`, not `app/pages/`: Streamlit would run a folder named `pages/` next to
    the entry script as legacy multipage pages on a fresh server, and a deep link such as `/episodes` would skip
    console.py.
    """
    if not settings().console_password:
        return
    signer = SessionSigner.from_env()
    if signer is not None and signer.valid(st.context.cookies.get(COOKIE_NAME)):
        return
    st.title("flywheel console")
    st.error(f"Sign in first: start the console with `flywheel console` and sign in at {SIGNIN_PATH}.")
    st.stop()


# -- errors -------------------------------------------------------------------------------------------


@contextmanager
def show_errors() -> Iterator[None]:
    """Run a block; a FlywheelError becomes `st.error(message)` and the rest of the block is skipped."""
    try:
        yield
    except FlywheelError as exc:
        st.error(str(exc))


def fmt_time(value: Any) -> str:
    """A timestamp as `YYYY-MM-DD HH:MM:SS` (UTC), or an em dash for none."""
    return "—" if value is None else f"{value:%Y-%m-%d %H:%M:%S}"
