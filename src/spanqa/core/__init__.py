"""The base layer: errors, atomic file writing and the settings every stage reads (``spanqa.json``).

Imports nothing else of spanqa.
"""
