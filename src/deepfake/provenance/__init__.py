"""Provenance: what marks an output as synthetic and made by this tool, and reading those marks back."""
