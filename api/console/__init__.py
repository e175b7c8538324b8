"""The web console's static files (``static/``: HTML, CSS and ES modules, no build step), served
at ``/ui/`` by :mod:`api.routes.console` and shipped as package data."""
