"""Streamlit v2 components shipped as plain HTML/JS/CSS in `app/components/` (no build step)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import streamlit as st

ASSETS = Path(__file__).resolve().parent / "components"


def packaged_component(name: str, stem: str, html: str) -> Any:
    """Register the component `name`: `html` with `components/<stem>.js` and `.css`; call once per process (at
    import)."""
    return st.components.v2.component(
        name,
        html=html,
        css=(ASSETS / f"{stem}.css").read_text(),
        js=(ASSETS / f"{stem}.js").read_text(),
    )
