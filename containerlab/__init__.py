"""containerlab: learn how Docker works by building it from the kernel up.

Kept import-light on purpose: the container init re-executes Python for every container
start, and everything imported here is paid for on each one.
"""

__version__ = "0.1.0"
