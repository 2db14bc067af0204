"""The deployment mapping: its models, the wire mappings of configured back ends, presets, and `paht validate`."""
