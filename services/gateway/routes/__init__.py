"""HTTP routes, one module per resource; each exports `routes`."""
