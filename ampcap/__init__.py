"""ampcap: capture a guitar amplifier or pedal into a dataset and a compact neural model of it."""

__version__ = "0.1.0"
