// Package nocopy marks the structs that must never be copied (a table, a
// tracker, a pipeline, a worker: their preallocated arrays and the
// pointers into them belong to one owner): go vet's copylocks check
// reports any copy of a struct that holds a NoCopy.
package nocopy

// NoCopy is a zero-size field whose Lock and Unlock make copylocks apply.
type NoCopy struct{}

// Lock is a no-op; it exists for go vet.
func (*NoCopy) Lock() {}

// Unlock is a no-op; it exists for go vet.
func (*NoCopy) Unlock() {}
