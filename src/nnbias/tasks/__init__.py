"""Tasks: the inputs and targets every experiment draws from."""
