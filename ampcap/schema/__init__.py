"""Schemas of the files that pass between stages. They import no stage and no console."""
