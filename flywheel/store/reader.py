"""Random frame-batch reads for training: memory-mapped episode files, verified once, gathered by index."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from flywheel.store.files import IMAGE_PREFIX, EpisodeFiles
from flywheel.store.records import EpisodeRecord
from flywheel.vocab.frames import gather_rows


class FrameReader:
    """Index frames of many episodes as one table and gather arbitrary batches of them.

    Small arrays (state, action, reward, controller) are copied into RAM once; images stay memory-mapped,
    so a batch touches only the pages of the frames it asks for.
    """

    def __init__(self, files: EpisodeFiles, records: Sequence[EpisodeRecord], verify: bool = True) -> None:
        if not records:
            raise ValueError("FrameReader needs at least one episode")
        self.records = list(records)
        maps = []
        for record in self.records:
            if verify:
                files.verify(record.file_uri, record.sha256, episode_id=record.id)
            maps.append(files.open_arrays(record.file_uri, episode_id=record.id))
        self.lengths = np.array([len(m["state"]) for m in maps], dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(self.lengths)])
        self.cameras = sorted({k[len(IMAGE_PREFIX) :] for m in maps for k in m if k.startswith(IMAGE_PREFIX)})
        self._small = {
            key: np.concatenate([np.asarray(m[key]) for m in maps])
            for key in ("state", "action", "reward", "controller")
        }
        self._images = {cam: [m[IMAGE_PREFIX + cam] for m in maps] for cam in self.cameras}

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def batch(self, frame_indices: np.ndarray) -> dict[str, np.ndarray]:
        """Gather frames by global index into arrays: state, action, reward, controller, image/<camera>."""
        idx = np.asarray(frame_indices, dtype=np.int64)
        out = {key: values[idx] for key, values in self._small.items()}
        for cam, maps in self._images.items():
            out[IMAGE_PREFIX + cam] = gather_rows(maps, self.offsets, idx)
        return out
