package ftp_test

import (
	"testing"

	"github.com/dpfw/dpfw/conntrack/ftp"
)

func TestParse(t *testing.T) {
	tests := []struct {
		line      string
		server    bool
		kind      ftp.Kind
		addr      string
		port      uint16
		malformed bool
	}{
		// RFC 959 and real clients.
		{"PORT 198,18,0,1,195,80", false, ftp.Port, "198.18.0.1", 50000, false},
		{"port 198,18,0,1,4,1", false, ftp.Port, "198.18.0.1", 1025, false},
		{"PORT 198,18,0,256,4,1", false, 0, "", 0, false}, // out of range: no expectation, no drop
		{"PORT 198,18,0,1,4", false, 0, "", 0, true},
		{"PORT 198,18,0,1,0,0", false, 0, "", 0, true},
		{"PORT 1981,18,0,1,4,1", false, 0, "", 0, false},
		// RFC 2428, any delimiter.
		{"EPRT |1|198.18.0.1|50000|", false, ftp.Eprt, "198.18.0.1", 50000, false},
		{"EPRT |2|2001:db8::1|50001|", false, ftp.Eprt, "2001:db8::1", 50001, false},
		{"eprt !1!198.18.0.1!2000!", false, ftp.Eprt, "198.18.0.1", 2000, false},
		{"EPRT |1|2001:db8::1|50000|", false, 0, "", 0, true},
		{"EPRT |3|198.18.0.1|50000|", false, 0, "", 0, true},
		{"EPRT |1|198.18.0.1|70000|", false, 0, "", 0, true},
		{"EPRT |1|198.18.0.1|50000", false, 0, "", 0, true},
		{"RETR file", false, 0, "", 0, false},
		// nf_conntrack_ftp parity (Linux 6.x): leading zeros in PORT and
		// in EPRT's IPv4 address; the family is one character; PORT ends
		// the line.
		{"PORT 198,018,000,001,195,080", false, ftp.Port, "198.18.0.1", 50000, false},
		{"EPRT |1|198.018.000.001|50000|", false, ftp.Eprt, "198.18.0.1", 50000, false},
		{"EPRT |01|198.18.0.1|50000|", false, 0, "", 0, true},
		{"EPRT 1|1|198.18.0.1|50000|", false, 0, "", 0, true},
		{"EPRT |2|198.18.0.1|50000|", false, 0, "", 0, true},
		{"EPRT |1|198.18.0.300|50000|", false, 0, "", 0, false},
		{"PORT 198,18,0,1,195,80 trailing", false, 0, "", 0, true},
		// Servers: vsftpd, ProFTPD, Pure-FTPd, and variants.
		{"227 Entering Passive Mode (198,18,0,2,195,80).", true, ftp.Pasv, "198.18.0.2", 50000, false},
		{"227 Entering Passive Mode. 198,18,0,2,195,80", true, ftp.Pasv, "198.18.0.2", 50000, false},
		{"227 Entering Passive Mode 198,18,0,2,195,80", true, ftp.Pasv, "198.18.0.2", 50000, false},
		{"227 =198,18,0,2,195,80", true, ftp.Pasv, "198.18.0.2", 50000, false},
		{"227 Entering Passive Mode (198,18,0,2,300,80)", true, 0, "", 0, false},
		{"229 Entering Extended Passive Mode (|||50001|)", true, ftp.Epsv, "", 50001, false},
		{"229 Extended Passive mode OK (|||50002|)", true, ftp.Epsv, "", 50002, false},
		{"229 Entering Extended Passive Mode (!!!50003!)", true, ftp.Epsv, "", 50003, false},
		{"229 Entering Extended Passive Mode (|||0|)", true, 0, "", 0, true},
		{"229 Entering Extended Passive Mode (||50001|)", true, 0, "", 0, true},
		{"230 Login successful.", true, 0, "", 0, false},
		// Continuation lines announce nothing (the kernel's search table
		// has "227 " and "229 ").
		{"227-Entering Passive Mode (198,18,0,2,195,80).", true, 0, "", 0, false},
		{"229-Entering Extended Passive Mode (|||50001|)", true, 0, "", 0, false},
		{"22", true, 0, "", 0, false},
	}
	for _, tt := range tests {
		var a ftp.Announce
		var ok, bad bool
		if tt.server {
			a, ok, bad = ftp.ParseServer([]byte(tt.line))
		} else {
			a, ok, bad = ftp.ParseClient([]byte(tt.line))
		}
		if bad != tt.malformed || ok != (tt.kind != 0) {
			t.Errorf("%q: ok %v malformed %v; want ok %v malformed %v", tt.line, ok, bad, tt.kind != 0, tt.malformed)
			continue
		}
		if !ok {
			continue
		}
		addr := ""
		if a.Addr.IsValid() {
			addr = a.Addr.String()
		}
		if a.Kind != tt.kind || addr != tt.addr || a.Port != tt.port {
			t.Errorf("%q: %v %s %d; want %v %s %d", tt.line, a.Kind, addr, a.Port, tt.kind, tt.addr, tt.port)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"PORT 1,2,3,4,5,6", "EPRT |2|::1|5|", "227 (1,2,3,4,5,6)", "229 (|||5|)"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if a, ok, _ := ftp.ParseClient(b); ok && (a.Port == 0 || !a.Addr.IsValid()) {
			t.Fatalf("client announce without port or address: %+v", a)
		}
		if a, ok, _ := ftp.ParseServer(b); ok && a.Port == 0 {
			t.Fatalf("server announce without port: %+v", a)
		}
	})
}

func TestNoAllocs(t *testing.T) {
	line := []byte("EPRT |2|2001:db8::1|50001|")
	if n := testing.AllocsPerRun(100, func() { ftp.ParseClient(line) }); n != 0 {
		t.Errorf("ParseClient allocates %v", n)
	}
}
