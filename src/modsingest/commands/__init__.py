"""Subcommands that are thin shells around the library modules."""
