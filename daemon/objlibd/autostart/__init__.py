"""Starting the daemon at login: the service plan and its launchd and systemd renderings."""
