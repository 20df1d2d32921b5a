package hasync

import (
	"fmt"
	"runtime"

	"golang.org/x/sys/unix"
)

// inNetns runs f on a thread in the network namespace name (as ip netns
// names them: /run/netns/NAME). Sockets f opens stay in that namespace.
// The thread is never given back to the scheduler: it ends with the
// goroutine, so that no other goroutine runs in the wrong namespace.
func inNetns(name string, f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		fd, err := unix.Open("/run/netns/"+name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			errc <- fmt.Errorf("network namespace %q: %w (ip netns add %s creates it)", name, err, name)
			return
		}
		defer unix.Close(fd)
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("entering network namespace %q: %w", name, err)
			return
		}
		errc <- f()
	}()
	return <-errc
}
