"""The `cairn` client: HTTP commands against any Cairn server (upload, download, events, ...).

An adapter like the rest of bus/: it speaks the public HTTP contract only, never imports
api/ or handlers/, so it works the same against a local `cairn up` and a remote server.
"""
