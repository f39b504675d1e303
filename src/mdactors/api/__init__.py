"""Protocol front ends. Thin: they translate between the engine and a wire protocol."""
