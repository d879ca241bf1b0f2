"""What a sweep will run: the named grids, the GPU-hour cost model, and the identity (cache kind
and key) of every shared phase."""
