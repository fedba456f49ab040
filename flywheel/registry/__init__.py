"""Policy versions, statuses, and the audited `champion` / `challenger` aliases."""

from flywheel.registry.records import AliasMove, PolicyRecord
from flywheel.registry.service import CHALLENGER, CHAMPION, PolicyRegistry, RegistryError

__all__ = ["CHALLENGER", "CHAMPION", "AliasMove", "PolicyRecord", "PolicyRegistry", "RegistryError"]
