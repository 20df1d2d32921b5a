// Package header provides fixed-offset views over protocol headers in a byte
// slice, in the style of gVisor's tcpip/header: type IPv4 []byte and friends,
// with accessors that read big-endian fields at named offsets.
//
// A view is validated once (IsValid or a length check by the caller, see each
// type); after that the accessors are unchecked: calling one on a view that
// failed validation may panic on a bounds check, never read out of bounds.
package header
