"""cmdrec: predict the next command a person will run in an application."""

__version__ = "0.1.0"
