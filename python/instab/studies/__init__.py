"""Every experiment behind ``instab characterize``, each returning a result with ``to_text()`` and ``to_dict()``."""

__all__: list[str] = []
