"""Sandboxes: the filesystem and shell an agent acts through (see ``base``)."""
