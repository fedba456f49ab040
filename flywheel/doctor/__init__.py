"""`flywheel doctor`: checks a home and its database for every invariant the store promises; safe repairs."""

from flywheel.doctor.problems import IN_FLIGHT_GRACE, Problem
from flywheel.doctor.runner import DoctorReport, open_store, run_doctor

__all__ = ["IN_FLIGHT_GRACE", "DoctorReport", "Problem", "open_store", "run_doctor"]
