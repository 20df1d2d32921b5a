package main

import (
	"encoding/json"
	"fmt"
	"os"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
	"github.com/spf13/cobra"

	"github.com/dpfw/dpfw/control/replay"
)

// replayCmd is `dpfw replay`: the pipeline over a capture, offline.
func replayCmd() *cobra.Command {
	var path, write string
	var portArgs []string
	var asJSON bool
	c := &cobra.Command{
		Use:   "replay CAPTURE.pcap",
		Short: "Run a capture through the rules offline and print each frame's verdict, state and deciding rule",
		Long: `replay runs a pcap or pcapng capture through the exact pipeline a worker
runs (decoding, checksums, connection tracking with the capture's timestamps
as its clock, the FTP helper, fragments, the rules), one frame at a time, with
no DPDK, and prints one line per frame: its number, time, input port,
verdict, conntrack state, the rule or policy that decided, and the drop
reason. --port NAME=MAC says which frames entered on which config port (by
source MAC; repeat it), NAME=IFINDEX by pcapng interface, NAME=any for
every frame no other --port claims. -w writes what would have been
forwarded.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, _, err := loadConfig(path)
			if err != nil {
				return err
			}
			var ports []replay.Port
			for _, a := range portArgs {
				p, err := replay.ParsePort(a)
				if err != nil {
					return usageError{err}
				}
				ports = append(ports, p)
			}
			if len(ports) == 0 {
				return usageError{fmt.Errorf("no --port: say which frames entered on which port, e.g. --port a=02:00:00:00:00:01 --port b=02:00:00:00:00:02")}
			}
			in, err := os.Open(args[0])
			if err != nil {
				return err
			}
			defer in.Close()
			sink := replay.Sink{Fate: printFate(cmd, asJSON)}
			if write != "" {
				out, err := os.Create(write)
				if err != nil {
					return err
				}
				defer out.Close()
				w := pcapgo.NewWriter(out)
				if err := w.WriteFileHeader(65535, layers.LinkTypeEthernet); err != nil {
					return err
				}
				sink.Forward = func(ci gopacket.CaptureInfo, frame []byte) error {
					ci.CaptureLength, ci.Length = len(frame), len(frame)
					return w.WritePacket(ci, frame)
				}
			}
			sum, err := replay.Run(cfg, ports, in, sink)
			if err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			if !asJSON {
				fmt.Fprintf(cmd.ErrOrStderr(), "%s: %d frames: %d accepted, %d dropped\n", args[0], sum.Frames, sum.Accepted, sum.Dropped)
			}
			return nil
		},
	}
	c.Flags().StringVarP(&path, "config", "c", "", "config file (default: the embedded configs/default.yaml)")
	c.Flags().StringArrayVar(&portArgs, "port", nil, "NAME=MAC, NAME=IFINDEX or NAME=any: frames from that source MAC (pcapng interface; or any other) entered on port NAME")
	c.Flags().StringVarP(&write, "write", "w", "", "write the frames that would have been forwarded to this pcap")
	c.Flags().BoolVar(&asJSON, "json", false, "one JSON object per frame")
	return c
}

// printFate prints each frame's fate as a line, or as JSON.
func printFate(cmd *cobra.Command, asJSON bool) func(*replay.Fate) error {
	enc := json.NewEncoder(cmd.OutOrStdout())
	return func(f *replay.Fate) error {
		if asJSON {
			return enc.Encode(f)
		}
		_, err := fmt.Fprintln(cmd.OutOrStdout(), f.String())
		return err
	}
}
