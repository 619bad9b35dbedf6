"""The `tierkit` verbs, one module each; `tierkit.cli` mounts them."""
