"""OpenFlow switches sliced by flowspace; see drivers/openflow/driver.py and docs/openflow.md."""
from drivers.openflow.driver import FLOWSPACE_TYPE, OpenFlowDriver

__all__ = ["FLOWSPACE_TYPE", "OpenFlowDriver"]
