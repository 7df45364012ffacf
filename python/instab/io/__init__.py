"""Files in and out: labels CSV, manifests, the results store."""

__all__: list[str] = []
