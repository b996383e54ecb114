"""Thin trio shells around sockets: they move bytes, the core does the rest."""
