"""The registry of benchmark methods; later capabilities register theirs here."""

from __future__ import annotations

from ._method import Method

__all__ = ["METHODS", "register_method", "get_method", "method_names"]

METHODS: dict[str, Method] = {}


def register_method(method: Method, *, overwrite: bool = False) -> Method:
    """Add ``method`` to the registry; refuses to replace an existing name unless ``overwrite``."""
    if not isinstance(method, Method):
        raise TypeError(f"register_method expects a Method instance, found {type(method).__name__}.")
    if method.name in METHODS and not overwrite:
        raise ValueError(
            f"A method named {method.name!r} is already registered. Pass overwrite=True "
            "to replace it, or choose another name."
        )
    METHODS[method.name] = method
    return method


def method_names() -> list[str]:
    """Registered names, in registration order."""
    return list(METHODS)


def get_method(name: str) -> Method:
    """Look a method up by name, with the list of valid names in the error."""
    try:
        return METHODS[name]
    except KeyError:
        raise ValueError(f"Unknown method {name!r}. Expected one of: {', '.join(METHODS)}.") from None
