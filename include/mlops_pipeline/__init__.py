"""MLOps pipeline library: config, data, validation, training, registry, deploy, monitoring."""
