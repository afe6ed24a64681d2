package agent_test

import (
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/iotagent/iotagent/agent"
	"github.com/iotagent/iotagent/cloud"
)

// netLab is a network namespace made for one test, joined to the test's
// namespace by a veth pair on a /30 of its own: iotsim listens inside it,
// the agent connects from outside, so every packet between them crosses
// the veth, where the test loses, delays or cuts them. Nothing else on
// the machine is touched.
type netLab struct {
	ns, hostIf, nsIf, hostIP, nsIP string
}

// requireNetAdmin skips (fails when CI=true) without root or the tools.
func requireNetAdmin(t *testing.T, tools map[string]string) {
	t.Helper()
	ci := os.Getenv("CI") == "true"
	if os.Geteuid() != 0 {
		if ci {
			t.Fatal("network namespace tests need root (ip netns, veth, nft); CI must run them as root")
		}
		t.Skip("network namespace tests need root (ip netns, veth, nft); skipped")
	}
	for tool, pkg := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			if ci {
				t.Fatalf("%s not found: CI must install the %s package", tool, pkg)
			}
			t.Skipf("%s not found (install the %s package); skipped", tool, pkg)
		}
	}
}

func run(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func newNetLab(t *testing.T) *netLab {
	t.Helper()
	requireNetAdmin(t, map[string]string{"ip": "iproute2", "nft": "nftables"})
	out, err := exec.Command("ip", "-o", "-4", "addr", "show").CombinedOutput()
	if err != nil {
		t.Fatalf("ip addr show: %v\n%s", err, out)
	}
	var n int
	for tries := 0; ; tries++ {
		n = 1 + rand.IntN(250)
		if !strings.Contains(string(out), fmt.Sprintf(" 10.231.%d.", n)) {
			break
		}
		if tries > 50 {
			t.Fatal("no free 10.231.N.0/30 subnet for the test's veth")
		}
	}
	tag := fmt.Sprintf("%d%03d", os.Getpid()%10000, n)
	l := &netLab{ns: "iotagent-test-" + tag, hostIf: "iat" + tag + "h", nsIf: "iat" + tag + "n",
		hostIP: fmt.Sprintf("10.231.%d.1", n), nsIP: fmt.Sprintf("10.231.%d.2", n)}
	run(t, "ip", "netns", "add", l.ns)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", l.ns).Run() })
	run(t, "ip", "link", "add", l.hostIf, "type", "veth", "peer", "name", l.nsIf)
	t.Cleanup(func() { _ = exec.Command("ip", "link", "del", l.hostIf).Run() })
	run(t, "ip", "link", "set", l.nsIf, "netns", l.ns)
	run(t, "ip", "addr", "add", l.hostIP+"/30", "dev", l.hostIf)
	run(t, "ip", "link", "set", l.hostIf, "up")
	run(t, "ip", "-n", l.ns, "addr", "add", l.nsIP+"/30", "dev", l.nsIf)
	run(t, "ip", "-n", l.ns, "link", "set", l.nsIf, "up")
	run(t, "ip", "-n", l.ns, "link", "set", "lo", "up")
	return l
}

// nft runs an nft command inside the namespace.
func (l *netLab) nft(t *testing.T, cmd string) {
	t.Helper()
	run(t, "ip", "netns", "exec", l.ns, "nft", cmd)
}

// drop makes the namespace drop percent of the packets in each direction
// (100: a partition, packets vanish without an answer).
func (l *netLab) drop(t *testing.T, percent int) {
	t.Helper()
	l.nft(t, "add table inet iotfault; "+
		"add chain inet iotfault in { type filter hook input priority 0; policy accept; }; "+
		"add chain inet iotfault out { type filter hook output priority 0; policy accept; }")
	rule := fmt.Sprintf("numgen random mod 100 < %d counter drop", percent)
	if percent >= 100 {
		rule = "counter drop"
	}
	l.nft(t, "add rule inet iotfault in "+rule+"; add rule inet iotfault out "+rule)
}

func (l *netLab) heal(t *testing.T) { l.nft(t, "delete table inet iotfault") }

// dropped returns how many packets the namespace's rules dropped.
func (l *netLab) dropped(t *testing.T) int {
	t.Helper()
	out, err := exec.Command("ip", "netns", "exec", l.ns, "nft", "list", "table", "inet", "iotfault").CombinedOutput()
	if err != nil {
		t.Fatalf("nft list: %v\n%s", err, out)
	}
	total := 0
	for _, f := range strings.Split(string(out), "counter packets ")[1:] {
		var n int
		if _, err := fmt.Sscan(f, &n); err == nil {
			total += n
		}
	}
	return total
}

// errNoNetem: the kernel has no netem queueing discipline.
var errNoNetem = errors.New("the kernel has no netem (CONFIG_NET_SCH_NETEM, module sch_netem)")

// netem adds a netem qdisc with args on both ends of the veth.
func (l *netLab) netem(t *testing.T, args ...string) error {
	t.Helper()
	for _, cmd := range [][]string{
		append([]string{"tc", "qdisc", "add", "dev", l.hostIf, "root", "netem"}, args...),
		append([]string{"ip", "netns", "exec", l.ns, "tc", "qdisc", "add", "dev", l.nsIf, "root", "netem"}, args...),
	} {
		out, err := exec.Command(cmd[0], cmd[1:]...).CombinedOutput()
		if strings.Contains(string(out), "qdisc kind is unknown") {
			return errNoNetem
		}
		if err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(cmd, " "), err, out)
		}
	}
	return nil
}

// startSim starts iotsim with its listeners inside the namespace: they
// are opened on a thread that has joined it (a socket stays in the
// namespace it was made in), and the thread goes back before it is
// released.
func (l *netLab) startSim(t *testing.T) *cloud.Sim {
	t.Helper()
	type result struct {
		sim *cloud.Sim
		err error
	}
	ch := make(chan result, 1)
	dir := t.TempDir()
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			ch <- result{err: err}
			return // the thread ends with the goroutine, still locked
		}
		defer orig.Close()
		target, err := os.Open("/run/netns/" + l.ns)
		if err != nil {
			ch <- result{err: err}
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			ch <- result{err: fmt.Errorf("setns %s: %w", l.ns, err)}
			return
		}
		sim, err := cloud.Start(cloud.Options{DataDir: dir, MQTTAddr: l.nsIP + ":0", HTTPAddr: l.nsIP + ":0",
			Logger: slog.New(slog.DiscardHandler), MQTTConnectInterval: -1})
		if unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		}
		ch <- result{sim, err}
	}()
	r := <-ch
	if r.err != nil {
		t.Fatalf("start iotsim in %s: %v", l.ns, r.err)
	}
	t.Cleanup(func() { r.sim.Close() })
	return r.sim
}

// TestAgentOverBadNetwork runs the agent against iotsim across a real
// veth between network namespaces that loses packets, delays them, and
// cuts the link for a while: no alarm is lost, the shadow converges,
// every job ends.
func TestAgentOverBadNetwork(t *testing.T) {
	if testing.Short() {
		t.Skip("network namespace runs take seconds; skipped with -short")
	}
	opt := agent.Options{AckTimeout: 5 * time.Second}
	t.Run("loss", func(t *testing.T) {
		l := newNetLab(t)
		l.drop(t, 10)
		runUnderFaults(t, "box-loss", nil, opt, faultEnv{sim: l.startSim, serverName: "localhost"})
		if n := l.dropped(t); n == 0 {
			t.Error("no packet was dropped: the traffic did not cross the lossy veth")
		} else {
			t.Logf("%d packets dropped on the veth", n)
		}
	})
	t.Run("latency", func(t *testing.T) {
		l := newNetLab(t)
		if err := l.netem(t, "delay", "150ms", "50ms"); err != nil {
			t.Skipf("%v: latency not tested here", err)
		}
		runUnderFaults(t, "box-latency", nil, opt, faultEnv{sim: l.startSim, serverName: "localhost"})
	})
	t.Run("partition", func(t *testing.T) {
		l := newNetLab(t)
		during := func(t *testing.T, d *device, raise func()) {
			l.drop(t, 100)
			raise() // while cut off: the alarms wait in the outbox
			waitUntil(t, "the agent to notice the partition", func() (bool, string) {
				s := d.agent.Status()
				return !s.Connected, fmt.Sprintf("%+v", s)
			})
			if n := l.dropped(t); n == 0 {
				t.Error("the partition dropped no packet")
			}
			l.heal(t)
		}
		runUnderFaults(t, "box-partition", nil, opt, faultEnv{sim: l.startSim, serverName: "localhost", during: during})
	})
}
