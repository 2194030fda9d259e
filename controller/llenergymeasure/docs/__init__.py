"""Documents generated from the config models so they cannot drift from the code: the JSON Schemas editors use for
completion, the field reference in docs/config-reference.md, and the starter config ``lem config init`` writes."""
