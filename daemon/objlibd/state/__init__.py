"""The local SQLite state: schema and migrations, tracked files, job and failure logs."""
