"""The resident daemon: its loop, worker thread, watcher, debouncer, scheduled jobs and pidfile."""
