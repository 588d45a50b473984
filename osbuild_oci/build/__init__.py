"""One build: its settings, its plan, running it, what it reports, and the files it reads and writes beside it."""
