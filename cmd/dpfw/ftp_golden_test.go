package main

import (
	"bytes"
	"encoding/binary"
	"path/filepath"
	"testing"
	"time"

	"github.com/dpfw/dpfw/control/config"
	"github.com/dpfw/dpfw/internal/e2e"
	"github.com/dpfw/dpfw/packet"
	"github.com/dpfw/dpfw/perf/pcapgen"
)

// ftpPcapConfig is ftpRules on a pcap pair whose port b is the inside.
func ftpPcapConfig(c *config.Config) {
	e2e.Iptables(c, ftpRules, "")
	c.Links[0].Inside = "b"
}

// pcapReplay feeds frames into port a of a dpfw running ftpRules (with b as the
// inside) and returns what b transmitted.
func pcapReplay(t *testing.T, frames [][]byte) [][]byte {
	t.Helper()
	p := startPcap(t, frames, ftpPcapConfig)
	p.waitReceived()
	time.Sleep(200 * time.Millisecond)
	return p.forwarded()
}

// TestPcapFTPGolden replays real FTP sessions (recorded from vsftpd and
// curl by TestTapFTP -update-ftp-captures) through dpfw with only port 21
// open: every frame passes unchanged, the data connection as RELATED. A copy
// whose data connection uses another port than the one announced loses
// exactly the data connection's frames.
func TestPcapFTPGolden(t *testing.T) {
	requireDPDK(t)
	for _, mode := range []string{"epsv", "pasv", "eprt", "port"} {
		t.Run(mode, func(t *testing.T) {
			frames, err := pcapgen.Read(filepath.Join("testdata", "ftp-"+mode+".pcap"))
			if err != nil || len(frames) < 20 {
				t.Fatalf("capture: %v, %d frames", err, len(frames))
			}
			got := pcapReplay(t, frames)
			if len(got) != len(frames) {
				t.Fatalf("forwarded %d of %d frames", len(got), len(frames))
			}
			for i := range frames {
				if !bytes.Equal(got[i], frames[i]) {
					t.Fatalf("frame %d changed", i)
				}
			}

			// Move the data connection to an unannounced port.
			var control, moved [][]byte
			dataPort := uint16(0)
			for _, f := range frames {
				var p packet.Parsed
				packet.Decode(f, &p)
				if p.SrcPort == 20 || p.DstPort == 20 {
					dataPort = p.SrcPort ^ p.DstPort ^ 20 // active: the client's port
				} else if dataPort == 0 && p.SrcPort != 21 && p.DstPort != 21 && p.DstPort >= 50000 {
					dataPort = p.DstPort // passive: the server's port
				}
			}
			if dataPort == 0 {
				t.Fatal("no data connection in the capture")
			}
			for _, f := range frames {
				var p packet.Parsed
				packet.Decode(f, &p)
				c := append([]byte(nil), f...)
				switch {
				case p.SrcPort == dataPort:
					binary.BigEndian.PutUint16(c[p.L4Off:], dataPort+1)
				case p.DstPort == dataPort:
					binary.BigEndian.PutUint16(c[p.L4Off+2:], dataPort+1)
				default:
					control = append(control, c)
				}
				pcapgen.FixChecksums(c) // dropped by the rules, not as corrupt
				moved = append(moved, c)
			}
			got = pcapReplay(t, moved)
			if len(got) != len(control) {
				t.Fatalf("with the data connection on an unannounced port, %d frames passed; want the %d control frames", len(got), len(control))
			}
			for i := range control {
				if !bytes.Equal(got[i], control[i]) {
					t.Fatalf("control frame %d changed", i)
				}
			}
		})
	}
}
