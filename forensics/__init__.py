"""forensics: find Coder workspace agents that survived a build boundary, with proof."""

__version__ = "0.1.0"
