"""One router per resource: health, tasks, rounds, models (and optimizer states), updates."""
