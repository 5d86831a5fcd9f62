"""Who may talk to the app, and how: the Host allow-list, same-origin writes, JSON-only writes,
and the API token -- as a bearer header or as the session cookie a token login sets.

What each defends against::

    DNS rebinding        a page at evil.example whose name now resolves to 127.0.0.1 reads and
                         writes the API as if it were the server's own page  -> Host allow-list
    cross-site writes    any page the operator visits POSTs to localhost (text/plain and forms
                         need no CORS preflight)        -> application/json only, same Origin
    tokens in URLs       access logs, proxies and browser history keep them -> refused; the page
                         logs in once (POST /login) and rides an HttpOnly cookie instead

Recorded tracebacks (of failed steps and runs) name files and source lines: the API shows them
to whoever may use it at all when that is a small circle -- the holders of the token, or, on a
server without one, the users of the machine it listens on (loopback) -- and never on a server
without a token that listens on another address, where anyone who reaches the port could read them.

The cookie never holds the token itself: it holds an HMAC of a fixed label keyed by the token,
so it is worthless anywhere else, changes when the token does, and needs no server-side state.
Its name is derived from the token too, so two servers on one host (cookies ignore ports)
do not log each other out.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from collections.abc import Iterable
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response

from ._http import Endpoint, HTTPError

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
_DEFAULT_PORTS = {"http": "80", "https": "443"}


def _host_and_port(netloc: str, default_port: str = "") -> tuple[str, str]:
    """``netloc`` (a Host header or an origin's authority) as a lower-case name and a port."""
    netloc = netloc.strip().lower()
    if netloc.startswith("["):  # [::1]:8000
        name, _, rest = netloc[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    else:
        name, _, port = netloc.partition(":") if netloc.count(":") <= 1 else (netloc, "", "")
    return name.rstrip("."), port or default_port


def is_loopback(name: str) -> bool:
    """Whether a host name or address is this machine's loopback (``localhost``, ``*.localhost``, 127/8, ::1)."""
    if name in LOOPBACK_NAMES or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


class Guard:
    """The checks of one app: ``token`` (None: no API token) and ``allowed_hosts`` (None: the
    loopback names when the connection arrived on a loopback address, anything otherwise;
    ``"*"`` in the list: anything)."""

    def __init__(self, token: str | None, allowed_hosts: Iterable[str] | None) -> None:
        self.token = token or None
        if isinstance(allowed_hosts, str):
            raise TypeError("allowed_hosts must be a list of host names, not a string")
        self.allowed_hosts = (
            None if allowed_hosts is None else frozenset(_host_and_port(h)[0] for h in allowed_hosts if h.strip())
        )
        key = (token or "").encode("utf-8")
        self.cookie_name = "durable_session_" + hashlib.sha256(b"durable cookie name\x00" + key).hexdigest()[:12]
        self._session = hmac.new(key, b"durable session v1", hashlib.sha256).hexdigest()

    def protect(self, endpoint: Endpoint, *, api: bool, write: bool) -> Endpoint:
        """``endpoint`` behind the checks: the Host always, the token for the API, the write rules
        for what changes state."""

        async def check(request: Request) -> Response:
            self.check_host(request)
            if api:
                self.check_no_token_in_url(request)
                if not self.authenticated(request):
                    raise HTTPError(401, "missing or invalid API token (send 'Authorization: Bearer <token>', or log in at POST /login)")
            if write:
                self.check_write(request)
            return await endpoint(request)

        check.__name__ = getattr(endpoint, "__name__", "endpoint")
        return check

    # -- every route but the webhooks ----------------------------------------------------------

    def check_host(self, request: Request) -> None:
        """400 unless the Host header names this server (a DNS-rebinding page names its own)."""
        host = request.headers.get("host", "")
        name, _ = _host_and_port(host)
        if self.allowed_hosts is None:
            server = request.scope.get("server")
            bound = str(server[0]) if server else ""
            if not is_loopback(bound) or is_loopback(name):
                return
            hint = "the server listens on loopback, so only loopback names are allowed"
        elif "*" in self.allowed_hosts or name in self.allowed_hosts:
            return
        else:
            hint = "allowed: " + ", ".join(sorted(self.allowed_hosts))
        raise HTTPError(
            400, f"Host {host!r} is not allowed ({hint}); add it with create_app(allowed_hosts=[...]) "
            "or durable serve --allowed-host"
        )

    def shows_tracebacks(self, request: Request) -> bool:
        """Whether this (already admitted) API request may read recorded tracebacks: with a token,
        yes; without one, only on a server listening on loopback."""
        if self.token is not None:
            return True
        server = request.scope.get("server")
        return server is not None and is_loopback(str(server[0]))

    # -- the API -------------------------------------------------------------------------------

    def check_no_token_in_url(self, request: Request) -> None:
        if "access_token" in request.query_params:
            raise HTTPError(
                400, "tokens are not accepted in URLs (access logs keep them): send 'Authorization: Bearer <token>', "
                "or log in once with POST /login"
            )

    def authenticated(self, request: Request) -> bool:
        """Whether the request carries the API token (bearer header) or the session cookie."""
        if self.token is None:
            return True
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and given.strip():
            return self.token_matches(given.strip(), latin1=True)
        cookie = request.cookies.get(self.cookie_name, "")
        return bool(cookie) and hmac.compare_digest(cookie.encode("ascii", "replace"), self._session.encode("ascii"))

    def token_matches(self, given: str, *, latin1: bool = False) -> bool:
        # Header values arrive decoded as latin-1: encoding them back gives the bytes that were
        # sent, which a UTF-8 client sends for a non-ASCII token. JSON bodies arrive as text.
        assert self.token is not None
        sent = given.encode("latin-1", "replace") if latin1 else given.encode("utf-8", "replace")
        return hmac.compare_digest(sent, self.token.encode("utf-8"))

    def check_write(self, request: Request) -> None:
        """A state-changing request: JSON only (415) and not sent by another origin's page (403).

        A cross-origin page can send text/plain or a form without a CORS preflight, but never
        ``application/json``; and a browser names the page's origin in ``Origin`` (or says
        ``Sec-Fetch-Site``). A request with neither header is not from a browser (curl, httpx,
        the CLI): there is no page to forge it.
        """
        media = request.headers.get("content-type", "").partition(";")[0].strip().lower()
        if media != "application/json":
            raise HTTPError(415, f"send the body as 'Content-Type: application/json' (got {media or 'no content type'!r})")
        origin = request.headers.get("origin")
        if origin is not None:
            if not self._same_origin(origin, request):
                raise HTTPError(403, f"cross-origin request refused (Origin {origin!r} is not this server)")
            return
        site = request.headers.get("sec-fetch-site")
        if site is not None and site.lower() not in ("same-origin", "none"):
            raise HTTPError(403, f"cross-site request refused (Sec-Fetch-Site: {site})")

    @staticmethod
    def _same_origin(origin: str, request: Request) -> bool:
        parts = urlsplit(origin)
        if parts.scheme not in _DEFAULT_PORTS or not parts.netloc:
            return False  # "null" (a sandboxed frame, a file: page) or something stranger
        # Compared by host and port, not scheme: behind a TLS-terminating proxy the server sees
        # http while the browser's origin says https. A Host without a port means the default
        # port of the scheme the browser used, which is the origin's.
        default = _DEFAULT_PORTS[parts.scheme]
        theirs = _host_and_port(parts.netloc, default)
        ours = _host_and_port(request.headers.get("host", ""), default)
        return theirs == ours

    # -- the session cookie --------------------------------------------------------------------

    def set_session(self, response: Response, request: Request, *, end: bool = False) -> None:
        """Set the session cookie of a login (a session cookie: gone with the browser), or expire it."""
        response.set_cookie(
            self.cookie_name, "" if end else self._session, max_age=0 if end else None,
            path=request.scope.get("root_path", "").rstrip("/") + "/",
            httponly=True, samesite="strict", secure=request.url.scheme == "https",
        )
