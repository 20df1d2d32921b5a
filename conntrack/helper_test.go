package conntrack_test

import (
	"testing"
	"time"

	"github.com/dpfw/dpfw/conntrack"
	"github.com/dpfw/dpfw/conntrack/tcpstate"
	"github.com/dpfw/dpfw/packet"
	"github.com/dpfw/dpfw/perf/pcapgen"
	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

func ftpTracker() *conntrack.Tracker {
	tr := conntrack.NewTracker(conntrack.Config{Capacity: 1024, Timeouts: conntrack.DefaultTimeouts(), Seed: 3,
		TCP: tcpstate.Options{Loose: true}, FTP: conntrack.DefaultFTP()})
	tr.SetNow(int64(time.Hour))
	return tr
}

// data builds a TCP segment with payload text.
func data(t *testing.T, src, dst string, sport, dport uint16, seq, ack uint32, text string) *packet.Parsed {
	return decode(t, pcapgen.Frame(eth(src), ipLayer(src, dst, layers.IPProtocolTCP),
		&layers.TCP{SrcPort: layers.TCPPort(sport), DstPort: layers.TCPPort(dport), Seq: seq, Ack: ack, ACK: true, PSH: true, Window: 65535},
		gopacket.Payload([]byte(text))))
}

// control opens an FTP control connection cli:40000 > srv:21 and returns
// the next sequence numbers of client and server.
func control(t *testing.T, tr *conntrack.Tracker, c, s string) (uint32, uint32) {
	t.Helper()
	for _, p := range []*packet.Parsed{
		seg(t, c, s, 40000, 21, "S", 100, 0, 65535, 0),
		seg(t, s, c, 21, 40000, "SA", 500, 101, 65535, 0),
		seg(t, c, s, 40000, 21, "A", 101, 501, 65535, 0),
	} {
		if r := tr.Track(p, 0); r.State == conntrack.Invalid {
			t.Fatalf("control handshake: %v", r.Reason)
		}
	}
	return 101, 501
}

func TestFTPPassive(t *testing.T) {
	for _, fam := range []struct{ c, s, reply string }{
		{cli, srv, "227 Entering Passive Mode (198,18,1,1,195,80).\r\n"},
		{cli6, srv6, "229 Entering Extended Passive Mode (|||50000|)\r\n"},
		{cli, srv, "229 Entering Extended Passive Mode (|||50000|)\r\n"},
	} {
		tr := ftpTracker()
		cs, ss := control(t, tr, fam.c, fam.s)
		// The reply arrives split across two segments.
		half := len(fam.reply) / 2
		tr.Track(data(t, fam.s, fam.c, 21, 40000, ss, cs, fam.reply[:half]), 0)
		tr.Track(data(t, fam.s, fam.c, 21, 40000, ss+uint32(half), cs, fam.reply[half:]), 0)
		if tr.FTP.Created != 1 {
			t.Fatalf("%s: expectations created %d; want 1", fam.reply, tr.FTP.Created)
		}
		// The client opens the data connection from any port: RELATED.
		r := tr.Track(seg(t, fam.c, fam.s, 41234, 50000, "S", 7000, 0, 65535, 0), 0)
		if r.State != conntrack.Related {
			t.Fatalf("data connection SYN: %v; want RELATED", r.State)
		}
		e, _ := tr.Entry(r.Conn)
		if !e.Related || e.Master < 0 {
			t.Errorf("data entry not linked to its control connection: %+v", e)
		}
		if r := tr.Track(seg(t, fam.s, fam.c, 50000, 41234, "SA", 9000, 7001, 65535, 0), 0); r.State != conntrack.Established {
			t.Errorf("data SYN/ACK: %v; want ESTABLISHED", r.State)
		}
		// Used once: a second connection to the port is NEW.
		if r := tr.Track(seg(t, fam.c, fam.s, 41235, 50000, "S", 8000, 0, 65535, 0), 0); r.State != conntrack.New {
			t.Errorf("second connection to the announced port: %v; want NEW", r.State)
		}
	}
}

func TestFTPActive(t *testing.T) {
	tr := ftpTracker()
	cs, ss := control(t, tr, cli, srv)
	cmd := "PORT 198,18,0,1,195,81\r\n"
	tr.Track(data(t, cli, srv, 40000, 21, cs, ss, cmd), 0)
	// A retransmission of the same segment creates no second expectation.
	tr.Track(data(t, cli, srv, 40000, 21, cs, ss, cmd), 0)
	if tr.FTP.Created != 1 || tr.FTP.Announces != 1 {
		t.Fatalf("created %d announces %d; want 1 and 1", tr.FTP.Created, tr.FTP.Announces)
	}
	// The server connects back from port 20.
	if r := tr.Track(seg(t, srv, cli, 20, 50001, "S", 1, 0, 65535, 0), 0); r.State != conntrack.Related {
		t.Fatalf("active data connection: %v; want RELATED", r.State)
	}
}

func TestFTPRefusals(t *testing.T) {
	for _, tt := range []struct {
		name, line string
		fromServer bool
		refusal    conntrack.ExpectRefusal
	}{
		{"bounce: PORT to a third host", "PORT 198,18,9,9,195,80\r\n", false, conntrack.RefusedBounce},
		{"forged 227 to a third host", "227 Entering Passive Mode (198,18,9,9,195,80)\r\n", true, conntrack.RefusedBounce},
		{"PORT below 1024", "PORT 198,18,0,1,0,25\r\n", false, conntrack.RefusedLowPort},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tr := ftpTracker()
			cs, ss := control(t, tr, cli, srv)
			if tt.fromServer {
				tr.Track(data(t, srv, cli, 21, 40000, ss, cs, tt.line), 0)
			} else {
				tr.Track(data(t, cli, srv, 40000, 21, cs, ss, tt.line), 0)
			}
			if tr.FTP.Created != 0 || tr.FTP.Refused[tt.refusal] != 1 {
				t.Errorf("created %d, refused %v; want 0 and one %s", tr.FTP.Created, tr.FTP.Refused, conntrack.RefusalNames[tt.refusal])
			}
		})
	}
	// A malformed announcement is counted and its segment dropped (as
	// nf_conntrack_ftp drops it); an out-of-range number is neither; an
	// over-long line is skipped.
	tr := ftpTracker()
	cs, ss := control(t, tr, cli, srv)
	if r := tr.Track(data(t, cli, srv, 40000, 21, cs, ss, "PORT 198,18,0,1,19x,1\r\n"), 0); !r.HelperDrop {
		t.Errorf("a malformed PORT: HelperDrop false; want the segment dropped")
	}
	long := make([]byte, 400)
	for i := range long {
		long[i] = 'x'
	}
	if r := tr.Track(data(t, cli, srv, 40000, 21, cs+23, ss, string(long)+"\r\nPORT 198,18,0,1,195,82\r\n"), 0); r.HelperDrop {
		t.Errorf("a good PORT after an over-long line: dropped")
	}
	if tr.FTP.Malformed != 1 || tr.FTP.LineTooLong != 1 || tr.FTP.Created != 1 {
		t.Errorf("malformed %d, too long %d, created %d; want 1, 1, 1", tr.FTP.Malformed, tr.FTP.LineTooLong, tr.FTP.Created)
	}
}

func TestFTPExpectationDiesWithMaster(t *testing.T) {
	tr := ftpTracker()
	cs, ss := control(t, tr, cli, srv)
	tr.Track(data(t, cli, srv, 40000, 21, cs, ss, "PORT 198,18,0,1,195,83\r\n"), 0)
	tr.Track(seg(t, cli, srv, 40000, 21, "R", cs+24, 0, 0, 0), 0)
	tr.SetNow(tr.Now() + int64(11*time.Second))
	for i := 0; i < 64; i++ {
		tr.Reap(64)
	}
	if r := tr.Track(seg(t, srv, cli, 20, 50003, "S", 1, 0, 65535, 0), 0); r.State == conntrack.Related {
		t.Errorf("data connection after its control connection ended: RELATED; want NEW")
	}
}
