"""The console process's live session managers.

A module Streamlit imports once per process, unlike the page files it runs afresh on every rerun: the owner made
here lives as long as the server and is closed at its exit (`flywheel.live.manager.ManagerOwner`).
"""

from __future__ import annotations

from flywheel.live.manager import ManagerOwner

MANAGERS = ManagerOwner()
