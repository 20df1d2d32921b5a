package conntrack

// Put is put, for the external tests.
func (r *EventRing) Put(e *Event) { r.put(e) }
