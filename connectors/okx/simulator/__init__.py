"""A faithful local OKX v5 market-data simulator replaying trade tapes (see docs/okx-simulator.md)."""

from connectors.okx.simulator.config import SimulatorConfig, parse_args
from connectors.okx.simulator.faults import FaultConfig
from connectors.okx.simulator.server import Simulator

__all__ = ["FaultConfig", "Simulator", "SimulatorConfig", "parse_args"]
