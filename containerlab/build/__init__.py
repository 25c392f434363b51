"""Building images: from a Dockerfile (the builder), or from a container (``commit``)."""
