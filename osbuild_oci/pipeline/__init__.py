"""The pipeline file: its model, its schema, how documents are checked, and the architectures it names."""
