"""Review and labelling of episodes: the queue, verdicts, failure-mode labels, undo, conflict detection."""

from flywheel.review.errors import ReviewConflictError, ReviewError
from flywheel.review.records import LabelRecord, RejectionImpact
from flywheel.review.service import ReviewService, check_author
from flywheel.review.taxonomy import DEFAULT_MODES, FailureMode, FailureTaxonomy, load_taxonomy

__all__ = [
    "DEFAULT_MODES",
    "FailureMode",
    "FailureTaxonomy",
    "LabelRecord",
    "RejectionImpact",
    "ReviewConflictError",
    "ReviewError",
    "ReviewService",
    "check_author",
    "load_taxonomy",
]
