package conntrack

import "github.com/dpfw/dpfw/internal/ring"

// NewEventRing is a worker's ring, for the external tests.
func NewEventRing() *EventRing { return ring.New[Event](EventRingSize) }
