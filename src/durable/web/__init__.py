"""``durable.web``: serve runs over HTTP -- a JSON API, SSE streams, hook and webhook endpoints,
and a live runs page. Needs the ``web`` extra (``pip install 'durable-workflows[web]'``).

::

    from durable.web import create_app
    app = create_app(durable.Runtime())      # uvicorn module:app  /  durable serve --app module:app

Routes (JSON unless noted; the API takes ``Authorization: Bearer <token>`` when a token is set,
or the session cookie ``POST /login`` sets for the page; tokens in URLs are refused; writes take
``application/json`` from the same origin only; every route but the webhooks checks ``Host``)::

    GET  /                                     the live runs page (HTML; holds no data itself)
    POST /login {"token"}, POST /logout        the page's session cookie (HttpOnly, SameSite=Strict)
    GET  /workflows                            what POST /runs can start (and published signatures)
    GET  /runs?status=&workflow=&version=&created_after=&created_before=&id_prefix=&limit=&cursor=
                                               newest first; next_cursor pages on
    POST /runs   {"workflow", "args", "kwargs", "run_id"?, "idempotency_key"?}   201 / 404 / 422
    GET  /runs/{id}                            status, timings, input, result or error, steps, hooks,
                                               streams, timeline, waiting_for
    GET  /runs/{id}/steps/{step_id}            one step: arguments, result or error, its attempts
    GET  /runs/{id}/events?after=SEQ&limit=N   the event log, payloads decoded ("more": a next page)
    POST /runs/{id}/cancel                     body {} or none
    GET  /runs/{id}/stream, /runs/{id}/streams/{namespace}
                                               SSE: id = chunk index, data = chunk JSON, then `event: end`
                                               ({"error": ...}); Last-Event-ID / ?start_index= resume;
                                               Accept: application/x-ndjson for NDJSON
    GET  /live/runs?..., /live/runs/{id}       SSE: a page of runs (as GET /runs) / one run, re-sent when they change
    POST /hooks/{token}                        JSON payload: 202 / 404 / 422 problems / 413 / 400
    ANY  /.well-known/workflow/v1/webhook/{token}   the full request, to a webhook: 202 or its response
                                               (public: 404 before the body is read, 408 / 413 / 503)

Layout: ``_app`` builds the Starlette app (routes, errors, lifespan); ``_guard`` says who may
talk to it (Host, Origin, content type, token, session cookie) and who may read tracebacks;
``_runs`` and ``_hooks`` are the endpoints, ``_listing`` the list's filters and pages;
``_streams`` turns chunk logs and run changes into SSE and NDJSON (``durable._client.present``
turns runs into plain JSON); ``_http`` holds request helpers; ``static/`` is the page (plain
HTML, CSS and ES modules, no build step: ``app.js`` routes, ``list.js`` the runs list,
``run.js`` one run, with ``timeline.js``, ``step.js``, ``hooks.js``, ``streams.js`` and
``events.js`` for its parts; ``api.js`` talks to the server, ``dom.js`` builds elements).
"""

from ._app import create_app as create_app

__all__ = ["create_app"]
