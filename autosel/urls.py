"""Storage URLs: parsed with SQLAlchemy, never pattern-matched, so a password never leaks.

A password may hold any character SQLAlchemy accepts (``/``, ``:``, percent-encoded ``@``…);
:func:`mask_url` renders the parsed URL with it hidden, and :func:`mask_in` removes it from
free text such as a driver's error message. An unencoded ``@`` in a password makes the URL
name another host; :func:`check_storage_url` refuses it up front without printing it.
"""

from __future__ import annotations

from urllib.parse import quote

from autosel.errors import InvalidInputError

HIDDEN = "***"


def _parse(url: str):
    import sqlalchemy as sa

    try:
        return sa.engine.make_url(url)
    except (sa.exc.ArgumentError, ValueError, TypeError):
        return None


def _credentials(url: str) -> tuple[object | None, list[str]]:
    """The parsed URL with the whole password in its password field, and the secret strings to hide."""
    parsed = _parse(url)
    if parsed is None:
        return None, []
    if parsed.host and "@" in parsed.host:  # an unencoded '@': the password runs up to the last '@'
        extra, host = parsed.host.rsplit("@", 1)
        password = f"{parsed.password or ''}@{extra}"
        parsed = parsed.set(password=password, host=host)
    password = parsed.password
    if password is None:
        return parsed, []
    text = str(password)
    secrets = {text, quote(text, safe=""), quote(text, safe="/")}
    if parsed.host is not None and "@" in text:
        secrets |= {part for part in text.split("@") if len(part) >= 4}
    return parsed, sorted(secrets, key=len, reverse=True)


def mask_url(url: str) -> str:
    """``url`` with its password replaced by ``***`` (text that is not a URL comes back as is,
    minus anything after ``scheme://user:`` up to the last ``@``)."""
    parsed, _ = _credentials(url)
    if parsed is None:
        head, sep, rest = url.partition("://")
        if sep and "@" in rest and ":" in rest.split("@")[0]:
            user = rest.split(":", 1)[0]
            return f"{head}://{user}:{HIDDEN}@{rest.rsplit('@', 1)[1]}"
        return url
    return parsed.render_as_string(hide_password=True)


def mask_in(text: str, url: str) -> str:
    """``text`` (e.g. an error message about ``url``) with ``url`` and its password hidden."""
    _, secrets = _credentials(url)
    text = text.replace(url, mask_url(url))
    for secret in secrets:
        if secret:
            text = text.replace(secret, HIDDEN)
    return text


def check_storage_url(url: str) -> None:
    """Refuse a storage URL that SQLAlchemy cannot parse, or whose password holds an unencoded ``@``.

    Raises:
        InvalidInputError: one line naming the URL (password hidden) and how to fix it.
    """
    parsed = _parse(url)
    if parsed is None:
        raise InvalidInputError(
            f"--storage {mask_url(url)} is not a SQLAlchemy URL: use e.g. sqlite:///runs/autosel.db "
            "or postgresql://user:password@host:5432/db"
        )
    if parsed.host and "@" in parsed.host:
        raise InvalidInputError(
            f"--storage {mask_url(url)}: the password holds an unencoded '@'; percent-encode it as %40"
        )
