"""Files in and out: labels CSV, manifests, the results store."""
