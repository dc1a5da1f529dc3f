"""NetFPGA cards as hardware virtual data planes, over a register-level interface."""
from drivers.netfpga.driver import SLIVER_TYPE, SYNC_ROUTES, NetFPGADriver
from drivers.netfpga.registers import CardTables, NetFPGARegisters, RegisterError, RouteEntry
from drivers.netfpga.simulated import Geometry, SimulatedCard

__all__ = ["CardTables", "Geometry", "NetFPGADriver", "NetFPGARegisters", "RegisterError",
           "RouteEntry", "SLIVER_TYPE", "SYNC_ROUTES", "SimulatedCard"]
