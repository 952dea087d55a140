"""A local web studio: generate, interpolate, humanize, drumify and listen in the browser.

  python -m flax_musicvae.studio --model=groove_4bar       (then open http://127.0.0.1:8050)

:mod:`.engine` does the model work, :mod:`.server` serves the page (``static/``: plain
HTML, CSS and JavaScript, nothing fetched from the network) and a JSON API.
"""
