"""Fast contact queries: which named geom pairs touch in the current MjData."""

from __future__ import annotations

import mujoco
import numpy as np


class ContactIndex:
    """Resolves geom names once; answers "do these geoms touch?" from one snapshot of `data.contact`."""

    def __init__(self, model: mujoco.MjModel) -> None:
        self._model = model
        self._ngeom = int(model.ngeom)
        self._pairs: set[int] = set()

    def geom_id(self, name: str) -> int:
        gid = mujoco.mj_name2id(self._model, mujoco.mjtObj.mjOBJ_GEOM, name)
        if gid < 0:
            raise KeyError(f"geom {name!r} not in the model")
        return int(gid)

    def update(self, data: mujoco.MjData) -> None:
        """Snapshot the contact pairs of `data` (call once per step, then query)."""
        n = int(data.ncon)
        if n == 0:
            self._pairs = set()
            return
        geoms = data.contact.geom[:n]
        lo = np.minimum(geoms[:, 0], geoms[:, 1])
        hi = np.maximum(geoms[:, 0], geoms[:, 1])
        self._pairs = set((lo * self._ngeom + hi).tolist())

    def touching(self, a: int, b: int) -> bool:
        lo, hi = (a, b) if a < b else (b, a)
        return lo * self._ngeom + hi in self._pairs

    def any_touching(self, group_a: tuple[int, ...], group_b: tuple[int, ...]) -> bool:
        return any(self.touching(a, b) for a in group_a for b in group_b)
