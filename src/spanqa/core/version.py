"""The spanqa release, in one place (``spanqa.__version__``, ``spanqa.json``, model cards, ``/health``)."""

__version__ = "0.2.0"
