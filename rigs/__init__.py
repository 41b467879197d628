"""Shipped rig files (package data): one TOML per audio interface or virtual rig."""
