"""MODS FITS bytes: the structural scan, the in-memory frame, the writer, astropy card configuration."""
