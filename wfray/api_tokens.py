"""Scoped bearer tokens of the HTTP API (WFRAY_API_TOKENS) and the scopes they grant."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from wfray.domain.errors import DefinitionError

API_SCOPES = ("read", "submit", "admin")  # each includes those before it


@dataclass(frozen=True, slots=True)
class ApiToken:
    """A named bearer token of the HTTP API and the scopes it grants; never in a repr."""

    name: str
    token: str = field(repr=False)
    scopes: frozenset[str] = frozenset({"read"})


def parse_api_tokens(text: str, source: str = "WFRAY_API_TOKENS") -> tuple[ApiToken, ...]:
    """Tokens as JSON: {"ci": {"token": "...", "scopes": ["read", "submit"]}, ...}.

    The error names the token and the field at fault, never a token's value.
    """
    try:
        items = json.loads(text)
    except ValueError:
        raise DefinitionError(
            f"{source} is not JSON (expected {{name: {{token, scopes}}}})"
        ) from None
    if not isinstance(items, dict):
        raise DefinitionError(f"{source} must be a JSON object {{name: {{token, scopes}}}}")
    tokens = []
    for name, item in items.items():
        token = item.get("token") if isinstance(item, dict) else None
        scopes = item.get("scopes", ["read"]) if isinstance(item, dict) else None
        if not isinstance(token, str) or len(token) < 16:
            raise DefinitionError(
                f"{source}: token {name!r} needs a 'token' string of at least 16 characters"
            )
        if not isinstance(scopes, list) or not scopes or not set(scopes) <= set(API_SCOPES):
            raise DefinitionError(
                f"{source}: token {name!r} needs 'scopes', a list of {', '.join(API_SCOPES)}"
            )
        tokens.append(ApiToken(name=str(name), token=token, scopes=frozenset(scopes)))
    if len({t.token for t in tokens}) < len(tokens):
        raise DefinitionError(f"{source}: two tokens have the same value")
    return tuple(tokens)
