"""``durable.web``: serve runs over HTTP -- a JSON API, SSE streams, hook and webhook endpoints,
and a live runs page. Needs the ``web`` extra (``pip install 'durable-workflows[web]'``).

::

    from durable.web import create_app
    app = create_app(durable.Runtime())      # uvicorn module:app  /  durable serve --app module:app

Layout: ``_app`` builds the Starlette app (routes, auth, errors, lifespan); ``_runs`` and
``_hooks`` are the JSON endpoints; ``_streams`` turns chunk logs and run changes into SSE
and NDJSON; ``_present`` turns store records into plain JSON; ``_http`` holds request
helpers; ``static/`` is the runs page.
"""

from ._app import create_app as create_app

__all__ = ["create_app"]
