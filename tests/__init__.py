"""The test suite; ``tests.reference`` holds the plain-numpy reference of every kernel."""
