"""What a person uses around a build: booting its output, a shell in a tree, a tree's bill of materials."""
