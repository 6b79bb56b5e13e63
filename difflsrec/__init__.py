"""DiffLSRec: the command line, shared settings and logging for every process kind."""

__version__ = "0.1.0"
