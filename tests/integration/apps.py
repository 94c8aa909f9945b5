"""The apps the integration tests wrap, and the README lines that build them."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from werkzeug.wrappers import Request, Response

from oauth_tai.integration import identity_of, require_scopes

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_snippets() -> dict[str, str]:
    """The Python blocks of the README's "Flask and Django" subsection."""
    section = README.read_text().split("### Flask and Django\n", 1)[1]
    section = re.split(r"\n##+ ", section, maxsplit=1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)
    assert len(blocks) == 3, "the Flask and Django subsection lost a block"
    return {"flask": blocks[0], "django_wsgi": blocks[1], "django_views": blocks[2]}


def run_snippet(name: str, **names: Any) -> dict[str, Any]:
    """Run one README block as a module would, with ``names`` defined."""
    namespace: dict[str, Any] = {"__name__": f"readme_{name}", **names}
    exec(compile(readme_snippets()[name], f"README.md:{name}", "exec"), namespace)
    return namespace


@Request.application
@require_scopes("connections")
def werkzeug_me(request: Request) -> Response:
    """A werkzeug view: the user and the consumer of the request's identity."""
    identity = identity_of(request)
    assert identity is not None
    body = {"user": identity.user, "consumer": identity.consumer_id}
    return Response(json.dumps(body), mimetype="application/json")


@require_scopes("connections")
def wsgi_me(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    """A bare WSGI handler: the user and the consumer of the identity."""
    identity = identity_of(environ)
    assert identity is not None
    body = json.dumps({"user": identity.user, "consumer": identity.consumer_id})
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body.encode()]


def challenge_params(header: str) -> dict[str, str]:
    """The auth-params of a Bearer challenge, unquoted."""
    scheme, _, rest = header.partition(" ")
    assert scheme == "Bearer"
    params = {}
    for part in rest.split(", "):
        name, _, value = part.partition("=")
        params[name] = json.loads(value)
    return params
