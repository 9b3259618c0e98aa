"""The sync engine: walk the library, diff it against the state, plan and apply uploads, moves and missing marks."""
