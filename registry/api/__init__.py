"""HTTP handlers for the distribution-spec endpoints, one module per resource."""
