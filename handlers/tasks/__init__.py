"""The task workers: a process kind of its own (`cairn run tasks`) that runs background
file tasks (domain/tasks/) claimed from a lease table, checkpointing as it goes."""
