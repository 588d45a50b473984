"""The disk assembler's parts: the default layout, described layouts, boot loaders, output formats."""
