"""The flash-sale benchmark: our queue and the seed's synchronous design, side by side."""
