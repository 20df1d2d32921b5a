package packet

// Test hooks.
var (
	DecodeFast = decodeFast
	DecodeFull = decodeFull
)
