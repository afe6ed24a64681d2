// Command fakeagent stands in for a broken new iotagent version in the
// OTA end-to-end tests. It is built with -ldflags "-X main.mode=MODE
// -X main.version=V":
//
//	exit  "run" exits 1 at once, as a binary that cannot start (a missing
//	      config key it requires, a panic in init) does
//	hang  "run" tells the supervisor READY=1 and then hangs: no more
//	      watchdog pings, no connection, no commit
//
// "version" answers like iotagent, so the test can tell it is running.
package main

import (
	"fmt"
	"net"
	"os"
	"time"
)

var (
	mode    = "exit"
	version = "dev"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "version" {
		fmt.Printf("iotagent %s (fakeagent %s)\n", version, mode)
		return
	}
	switch mode {
	case "hang":
		if err := notify("READY=1\nSTATUS=fake " + version + " hanging"); err != nil {
			fmt.Fprintln(os.Stderr, "fakeagent: notify:", err)
		}
		fmt.Fprintln(os.Stderr, "fakeagent: hanging")
		for { // (select{} would be reported as a deadlock by the runtime)
			time.Sleep(time.Hour)
		}
	default:
		fmt.Fprintf(os.Stderr, "fakeagent %s: exiting at start\n", version)
		os.Exit(1)
	}
}

// notify sends state to systemd's notify socket ($NOTIFY_SOCKET).
func notify(state string) error {
	p := os.Getenv("NOTIFY_SOCKET")
	if p == "" {
		return nil
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: p, Net: "unixgram"})
	if err != nil {
		return err
	}
	defer c.Close()
	_, err = c.Write([]byte(state))
	return err
}
