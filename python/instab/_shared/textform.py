"""The one parser of the ``kind:token,token,...`` text form used by environments, noise schemes and CLI options.

A token is ``key=value`` or a bare word; kinds are names (letters, digits, ``-``, ``_``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Spec:
    """One parsed ``kind:token,...`` text: its kind, bare words and key=value parameters, in order.

    ``what`` names the thing parsed in error messages (``environment``, ``noise``).
    """

    kind: str
    words: tuple[str, ...] = ()
    params: tuple[tuple[str, str], ...] = ()
    what: str = field(default="environment", compare=False)

    def param(self, key: str, default: Any = None, cast: Callable[[str], Any] = str) -> Any:
        for k, v in self.params:
            if k == key:
                try:
                    return cast(v)
                except (TypeError, ValueError) as exc:
                    raise ValueError(f"{self.what} {self}: parameter {key}={v!r} is invalid ({exc})") from None
        return default

    def check(self, words: Sequence[str] = (), keys: Sequence[str] = ()) -> None:
        """Raise ValueError for any bare word or key this kind does not accept."""
        for w in self.words:
            if w not in words:
                raise ValueError(
                    f"{self.what} {self}: unknown option {w!r} for {self.kind!r} (accepted: {sorted(words) or 'none'})"
                )
        for k, _ in self.params:
            if k not in keys:
                raise ValueError(
                    f"{self.what} {self}: unknown parameter {k!r} for {self.kind!r} "
                    f"(accepted: {sorted(keys) or 'none'})"
                )

    def __str__(self) -> str:
        tokens = list(self.words) + [f"{k}={v}" for k, v in self.params]
        return self.kind + (":" + ",".join(tokens) if tokens else "")



def parse_spec(text: str, what: str = "environment") -> Spec:
    """Parse one ``kind:token,...`` text (no ``+``); errors start with ``what`` and the text."""
    if not isinstance(text, str):
        raise TypeError(f"{what}: expected a string, got {type(text).__name__}")
    text = text.strip()
    kind, _, rest = text.partition(":")
    kind = kind.strip()
    if not kind or not kind.replace("-", "").replace("_", "").isalnum():
        raise ValueError(f"{what} {text!r}: expected 'kind' or 'kind:options', kind {kind!r} is not a name")
    words: list[str] = []
    params: list[tuple[str, str]] = []
    if rest.strip():
        for token in rest.split(","):
            token = token.strip()
            if not token:
                raise ValueError(f"{what} {text!r}: empty option (check the commas)")
            if "=" in token:
                key, _, value = token.partition("=")
                key, value = key.strip(), value.strip()
                if not key or not value:
                    raise ValueError(f"{what} {text!r}: option {token!r} must be key=value")
                if any(k == key for k, _ in params):
                    raise ValueError(f"{what} {text!r}: parameter {key!r} given twice")
                params.append((key, value))
            else:
                words.append(token)
    elif ":" in text:
        raise ValueError(f"{what} {text!r}: nothing after ':'")
    return Spec(kind.lower(), tuple(words), tuple(params), what)


__all__ = ["Spec", "parse_spec"]
