"""The web console: static files in static/ served at `/console` by the API process."""
