package daemon

import (
	"net/http/httptest"
	"testing"
)

// TestProbes: /api/readyz answers 503 until the daemon is ready, 200 then;
// /api/healthz 200 while no worker has failed.
func TestProbes(t *testing.T) {
	d := &Daemon{done: make(chan struct{})}
	h := d.Handler()
	get := func(path string) int {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("GET", path, nil))
		return w.Code
	}
	if c := get("/api/readyz"); c != 503 {
		t.Errorf("readyz before ready: %d; want 503", c)
	}
	d.ready.Store(true)
	if c := get("/api/readyz"); c != 200 {
		t.Errorf("readyz when ready: %d; want 200", c)
	}
	if c := get("/api/healthz"); c != 200 {
		t.Errorf("healthz: %d; want 200", c)
	}
	close(d.done)
	if c := get("/api/healthz"); c != 503 {
		t.Errorf("healthz with every worker stopped: %d; want 503", c)
	}
}
