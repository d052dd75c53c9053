"""A registry of model builders, so stages and tests can iterate over every model.

Example:
    >>> from kdet.models.registry import register_model, get_model, list_models
    >>> @register_model("toy")
    ... def build_toy(units=2):
    ...     import keras
    ...     return keras.Sequential([keras.layers.Dense(units)])
    >>> "toy" in list_models()
    True
"""

from collections.abc import Callable

_BUILDERS: dict[str, Callable] = {}


def register_model(name: str) -> Callable[[Callable], Callable]:
    """Decorator that registers a builder function under ``name``."""

    def decorator(builder: Callable) -> Callable:
        if name in _BUILDERS and _BUILDERS[name] is not builder:
            raise ValueError(f"A model named {name!r} is already registered.")
        _BUILDERS[name] = builder
        return builder

    return decorator


def get_model(name: str, **kwargs):
    """Build the registered model ``name`` with the builder's keyword arguments."""
    return get_builder(name)(**kwargs)


def get_builder(name: str) -> Callable:
    """The builder function registered as ``name``."""
    _import_families()
    if name not in _BUILDERS:
        raise ValueError(
            f"Unknown model {name!r}. Choose one of {list_models()}. Received: {name=}"
        )
    return _BUILDERS[name]


def list_models() -> list[str]:
    """Names of all registered models, sorted."""
    _import_families()
    return sorted(_BUILDERS)


def _import_families() -> None:
    """Import the model families so their builders register themselves."""
    import kdet.models  # noqa: F401  (kdet/models/__init__.py imports every family)
