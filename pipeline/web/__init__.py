"""The web page (``index.html``, ``app.js``, ``style.css``) and its server and HTTP API
(:mod:`~pipeline.web.server`; ``python -m pipeline.serve``)."""
