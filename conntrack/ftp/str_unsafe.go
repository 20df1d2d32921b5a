package ftp

import "unsafe"

// view returns b as a string without copying. Safe only because the caller
// (netip.ParseAddr) keeps no reference to its argument for the addresses we
// accept (zoned addresses, whose zone netip would intern, are rejected).
func view(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }
