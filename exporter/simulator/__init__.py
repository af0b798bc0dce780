"""A Letta Runs API simulator: the response shapes and quirks of each generation of the API (the
spec, Letta Cloud, Letta 0.16.8, Letta 0.11), fault injection, and the ground truth to check an
exporter against. Standard library only."""

from exporter.simulator.faults import Faults
from exporter.simulator.routes import RequestRecord
from exporter.simulator.sim import Simulator
from exporter.simulator.simconfig import SimConfig
from exporter.simulator.truth import TruthRun, TruthStep

__all__ = ["Faults", "RequestRecord", "SimConfig", "Simulator", "TruthRun", "TruthStep"]
