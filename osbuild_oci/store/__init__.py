"""The object store: trees and assembler outputs as images of a store's own storage, kept, locked and trimmed."""
