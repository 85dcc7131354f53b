"""The Kubernetes API conventions the evaluator speaks, so that kubectl works against it directly:
discovery, OpenAPI v3, PATCH, Table output and watch (issue 10, way 1)."""
