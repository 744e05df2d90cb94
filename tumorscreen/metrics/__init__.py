"""Pure metric functions: numpy in, numbers or small tables out."""
