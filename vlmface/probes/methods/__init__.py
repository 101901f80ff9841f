"""The built-in probe methods: each module here registers one (vlmface.probes.method), and is
imported once, on the first method lookup. A new built-in probe is one module here + one spec
in tasks/probes/; a probe of your own lives anywhere importable (a spec's `module:` field)."""
