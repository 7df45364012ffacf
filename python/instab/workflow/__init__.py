"""The bulk workflow: simulate environments into files, score a manifest into the store, report."""

__all__: list[str] = []
