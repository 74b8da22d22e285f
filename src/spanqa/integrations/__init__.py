"""Adapters that let other frameworks use spanqa models.

Each integration lives in its own module and needs its own optional extra
(``spanqa.integrations.haystack`` needs ``pip install "spanqa[haystack]"``).
Nothing is imported here, so ``import spanqa`` never needs those frameworks.
"""
