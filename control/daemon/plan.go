package daemon

import "github.com/dpfw/dpfw/control/config"

// The start-up plan, as pure functions of the configuration and of what the
// devices report: PlanEAL (before DPDK starts: eal.go) and PlanWorkers
// (once the ports are up). Start only carries the plans out, so what they
// decide is tested without DPDK (plan_test.go).

// PortFacts is what the worker plan needs to know of a started port.
type PortFacts struct {
	// RSS: the device spreads flows over queues by a symmetric hash, so
	// both directions of a connection reach the same worker.
	RSS bool
	// Peer is the index of the paired port, or -1 (no link: dropped).
	Peer int
}

// WorkerPlan is which worker polls what.
type WorkerPlan struct {
	// Steer: workers hand each packet to the worker owning its connection
	// (software steering, for devices without RSS), over one ring per
	// worker and port.
	Steer bool
	// Queues[w] are the sources worker w polls round-robin, in order.
	Queues [][]QueuePlan
}

// QueuePlan is one source a worker polls.
type QueuePlan struct {
	// Port is the index (in the config's ports) the packets entered on;
	// Queue its rx queue, which is also the worker's tx queue on every port.
	Port  int
	Queue uint16
	// Peer is where accepted packets go (the paired port), or -1.
	Peer int
	// Ring: poll the worker's steering ring for Port instead of the port.
	Ring bool
}

// PlanWorkers plans the workers over ports: worker w owns rx/tx queue w of
// every port; with steering (workers.steering on, or auto and a port
// without RSS, and more than one worker) each also polls its ring of every
// port, right after the port's queue.
func PlanWorkers(cfg *config.Config, ports []PortFacts) WorkerPlan {
	nw := len(cfg.Workers.CPUs)
	p := WorkerPlan{Steer: steers(cfg.Workers.Steering, nw, ports)}
	for w := 0; w < nw; w++ {
		var qs []QueuePlan
		for pi, pf := range ports {
			q := QueuePlan{Port: pi, Queue: uint16(w), Peer: pf.Peer}
			qs = append(qs, q)
			if p.Steer {
				q.Ring = true
				qs = append(qs, q)
			}
		}
		p.Queues = append(p.Queues, qs)
	}
	return p
}

// steers decides software steering: never for one worker; always when
// asked; with auto, when a port has no RSS.
func steers(mode string, workers int, ports []PortFacts) bool {
	if workers < 2 {
		return false
	}
	switch mode {
	case "on":
		return true
	case "auto":
		for _, p := range ports {
			if !p.RSS {
				return true
			}
		}
	}
	return false
}
