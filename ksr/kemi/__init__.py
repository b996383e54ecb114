"""Script engines and the export registry."""
