package console_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/iotagent/iotagent/cloud/defender"
	"github.com/iotagent/iotagent/cloud/rules"
)

// The browser tests drive Debian's headless Chromium (apt-get install
// chromium) with chromedp and assert what a person sees. Without a
// Chromium they skip, unless CI=true.

// browserTimeout bounds one browser test, Chromium's start included.
const browserTimeout = 90 * time.Second

func findChromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{os.Getenv("CHROMIUM"), "chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if name == "" {
			continue
		}
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("no Chromium found (CI=true): install Debian's chromium (apt-get install -y chromium) or set CHROMIUM")
	}
	t.Skip("no Chromium found: apt-get install -y chromium (or set CHROMIUM=/path) to run the console's browser tests")
	return ""
}

// browser starts a headless Chromium for t and returns a tab's context.
func browser(t *testing.T) context.Context {
	t.Helper()
	path := findChromium(t)
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox, // tests run as root in CI
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.WindowSize(1100, 900),
		chromedp.UserDataDir(t.TempDir()),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	bctx, cancelTab := chromedp.NewContext(actx, chromedp.WithErrorf(t.Logf))
	t.Cleanup(func() { cancelTab(); cancelAlloc() })
	// The first run starts the browser; its context must have no timeout
	// (the timeout would stop the browser), the later ones have one.
	if err := chromedp.Do(bctx); err != nil {
		t.Fatalf("start %s: %v", path, err)
	}
	ctx, cancelTimeout := context.WithTimeout(bctx, browserTimeout)
	t.Cleanup(cancelTimeout)
	return ctx
}

// artifactsDir is where screenshots go: $IOTAGENT_ARTIFACTS/console, or
// artifacts/console at the repository's root (gitignored).
func artifactsDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("IOTAGENT_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join("..", "..", "artifacts")
	}
	dir, err := filepath.Abs(filepath.Join(dir, "console"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// screenshot saves the page as name.png among the artefacts.
func screenshot(ctx context.Context, t *testing.T, name string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)) // quality 100 is PNG
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	path := filepath.Join(artifactsDir(t), name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", path)
}

// run runs chromedp actions, failing the test with what step failed.
func run(ctx context.Context, t *testing.T, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(ctx, actions...); err != nil {
		body, _ := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("body")))
		t.Fatalf("%s: %v\n--- the page shows ---\n%s", what, err, body)
	}
}

// waitJS polls a JavaScript condition on the page's DOM until it holds.
func waitJS(ctx context.Context, t *testing.T, what, cond string) {
	t.Helper()
	run(ctx, t, "wait for "+what, chromedp.Poll[chromedp.Void](cond, chromedp.WithPollingInterval(50*time.Millisecond)))
}

func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// TestConsoleInABrowser is the console as a person uses it: refused
// without the token, in with the login link, the thing connected in the
// fleet, its shadow following the device's reports, an edit of desired
// state (Arm) reaching the device, an alarm arriving live, a job created
// from the page, the rules' counters, and the thing disconnected.
func TestConsoleInABrowser(t *testing.T) {
	start := time.Now()
	sim := startSim(t)
	const thing = "chocolate-box-1"
	if _, err := sim.Rules().Create("alarms_to_notifications", rules.Payload{
		SQL:     "SELECT *, topic(2) AS thing FROM 'alarms/+'",
		Actions: rules.Actions{{Republish: &rules.Republish{Topic: "notifications/${topic(2)}"}}},
	}); err != nil {
		t.Fatal(err)
	}
	dev := connectDevice(t, sim, thing, "$aws/things/"+thing+"/shadow/update/delta", "$aws/things/"+thing+"/jobs/notify")
	base, token := consoleURL(t, sim)
	ctx := browser(t)

	// Without the token the console shows nothing but how to get in.
	run(ctx, t, "open the console without the token", chromedp.Navigate(base+"/#/fleet"))
	refused, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("body")))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(refused, "no token") || strings.Contains(refused, "Fleet") {
		t.Fatalf("without the token the page shows %q, want a refusal", refused)
	}

	// The login link: the cookie is set and the address bar is clean.
	run(ctx, t, "open the login link", chromedp.Navigate(sim.Endpoint().ConsoleURL),
		chromedp.WaitVisible(chromedp.CSS(`#things`)))
	loc, err := chromedp.Run(ctx, chromedp.Location())
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(loc, token) || !strings.HasSuffix(loc, "/console/") {
		t.Errorf("after login the address is %q, want the clean /console/", loc)
	}
	sel := fmt.Sprintf(`tr[data-thing=%s]`, jsString(thing))
	run(ctx, t, "the thing appears connected", chromedp.WaitVisible(chromedp.CSS(sel+` .state.connected`)))
	screenshot(ctx, t, "fleet")

	// The thing's page follows the device's reports.
	run(ctx, t, "open the thing", chromedp.Click(chromedp.CSS(sel+` a`)), chromedp.WaitVisible(chromedp.CSS(`#thing-connection.connected`)))
	dev.publish(t, "$aws/things/"+thing+"/shadow/update", `{"state":{"reported":{"alarm":{"armed":false,"state":"off"},"temperature":21.5}}}`)
	waitJS(ctx, t, "the reported temperature", `(document.querySelector('#shadow-reported')||{textContent: ''}).textContent.includes('"temperature": 21.5')`)
	waitJS(ctx, t, "the box shown disarmed", `(document.querySelector('#armed')||{textContent: ''}).textContent === 'disarmed'`)

	// Arm in the page: the device gets the delta.
	run(ctx, t, "click Arm", chromedp.Click(chromedp.CSS(`#arm`)))
	delta := dev.next(t, "$aws/things/"+thing+"/shadow/update/delta")
	var d struct {
		State struct {
			Alarm struct {
				Armed *bool `json:"armed"`
			} `json:"alarm"`
		} `json:"state"`
	}
	if err := json.Unmarshal(delta.Payload(), &d); err != nil || d.State.Alarm.Armed == nil || !*d.State.Alarm.Armed {
		t.Fatalf("the device got delta %s (%v), want alarm.armed true", delta.Payload(), err)
	}
	waitJS(ctx, t, "the delta shown", `(document.querySelector('#shadow-delta')||{textContent: ''}).textContent.includes('"armed": true')`)
	dev.publish(t, "$aws/things/"+thing+"/shadow/update", `{"state":{"reported":{"alarm":{"armed":true}}}}`)
	waitJS(ctx, t, "the box shown armed", `(document.querySelector('#armed')||{textContent: ''}).textContent === 'armed' && (document.querySelector('#shadow-delta')||{textContent: ''}).textContent === '—'`)
	screenshot(ctx, t, "thing")

	// On a phone's screen the page fits its width.
	run(ctx, t, "a phone's screen", chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile, chromedp.EmulateScale(2)))
	waitJS(ctx, t, "no sideways scrolling on a phone", `document.documentElement.scrollWidth <= window.innerWidth && document.querySelector('#arm').getBoundingClientRect().right <= window.innerWidth`)
	screenshot(ctx, t, "thing-phone")
	run(ctx, t, "back to the desktop", chromedp.EmulateViewport(1100, 900))

	// A desired edit of a named shadow, typed as JSON.
	if _, err := sim.Shadows().Update(thing, "config", []byte(`{"state":{"reported":{"interval":60}}}`)); err != nil {
		t.Fatal(err)
	}
	run(ctx, t, "edit the named shadow", chromedp.WaitVisible(chromedp.CSS(`#shadow-config-editor`)),
		chromedp.SetValue(chromedp.CSS(`#shadow-config-editor`), `{"interval": 30}`),
		chromedp.Click(chromedp.CSS(`#shadow-config-send`)))
	waitJS(ctx, t, "the named shadow's delta", `(document.querySelector('#shadow-config-delta')||{textContent: ''}).textContent.includes('"interval": 30')`)

	// Live messages: the alarm and the rule's notification arrive.
	run(ctx, t, "open live messages", chromedp.Navigate(base+"/#/messages?f="+strings.ReplaceAll("alarms/#\nnotifications/#", "\n", "%0A")),
		chromedp.WaitVisible(chromedp.CSS(`#live.on`)))
	dev.publish(t, "alarms/"+thing, `{"alarm":"motion","input":"pir"}`)
	waitJS(ctx, t, "the alarm and its notification", `[...document.querySelectorAll('#messages .topic')].map(e => e.textContent).sort().join() === `+
		jsString("alarms/"+thing+",notifications/"+thing))
	waitJS(ctx, t, "the alarm's payload", `document.querySelector('#messages').textContent.includes('"alarm": "motion"')`)
	screenshot(ctx, t, "messages")
	run(ctx, t, "watch a bad filter", chromedp.SetValue(chromedp.CSS(`#filters`), "alarms/#/x"), chromedp.Click(chromedp.CSS(`#watch`)))
	waitJS(ctx, t, "the bad filter named", `document.querySelector('#status').textContent.includes('live view refused') && document.querySelector('#status').textContent.includes('"alarms/#/x"')`)

	// A job from a document typed in the page reaches the device.
	run(ctx, t, "create a job", chromedp.Navigate(base+"/#/jobs"), chromedp.WaitVisible(chromedp.CSS(`#job-create`)),
		chromedp.SetValue(chromedp.CSS(`#job-id`), "reboot-1"), chromedp.SetValue(chromedp.CSS(`#job-things`), thing),
		chromedp.SetValue(chromedp.CSS(`#job-document`), `{"operation":"reboot"}`), chromedp.Click(chromedp.CSS(`#job-create`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-job="reboot-1"] .state.QUEUED`)))
	if n := dev.next(t, "$aws/things/"+thing+"/jobs/notify"); !strings.Contains(string(n.Payload()), "reboot-1") {
		t.Errorf("jobs/notify %s, want reboot-1 queued", n.Payload())
	}
	screenshot(ctx, t, "jobs")

	// The rule's counters.
	run(ctx, t, "open the rules", chromedp.Navigate(base+"/#/rules"), chromedp.WaitVisible(chromedp.CSS(`[data-rule="alarms_to_notifications"]`)))
	waitJS(ctx, t, "the rule's counters", `[...document.querySelectorAll('[data-rule="alarms_to_notifications"] .counter')].slice(0, 2).map(e => e.textContent).join() === '1,1'`)
	screenshot(ctx, t, "rules")
	// A Device Defender violation: the box listens on 4 TCP ports, its
	// security profile allows none.
	one := int64(1)
	if _, err := sim.Defender().CreateSecurityProfile(defender.SecurityProfile{Name: "box_ports", Behaviors: []defender.Behavior{{
		Name: "no_listening_ports", Metric: "aws:num-listening-tcp-ports",
		Criteria: &defender.Criteria{ComparisonOperator: "less-than", Value: &defender.MetricValue{Count: &one}}}}}); err != nil {
		t.Fatal(err)
	}
	if err := sim.Defender().AttachSecurityProfile("box_ports", "arn:aws:iot:us-east-1:123456789012:all/things"); err != nil {
		t.Fatal(err)
	}
	dev.publish(t, "$aws/things/"+thing+"/defender/metrics/json",
		`{"header":{"report_id":1,"version":"1.0"},"metrics":{"listening_tcp_ports":{"ports":[],"total":4}}}`)
	run(ctx, t, "open Device Defender", chromedp.Navigate(base+"/#/defender"), chromedp.WaitVisible(chromedp.CSS(`#violations`)))
	waitJS(ctx, t, "the violation", `[...document.querySelectorAll('#violations tbody tr')].some(r => r.textContent.startsWith(`+
		jsString(thing+"box_portsno_listening_ports (aws:num-listening-tcp-ports)")+`))`)
	screenshot(ctx, t, "defender")

	// The fleet sees the device go.
	run(ctx, t, "back to the fleet", chromedp.Navigate(base+"/#/fleet"), chromedp.WaitVisible(chromedp.CSS(sel+` .state.connected`)))
	dev.Disconnect(0)
	run(ctx, t, "the thing shown disconnected", chromedp.WaitVisible(chromedp.CSS(sel+` .state.disconnected`)))
	t.Logf("browser test took %s", time.Since(start).Round(time.Millisecond))
}

// TestConsoleShowsHostileDataAsText: a topic, a payload and a shadow
// value that are HTML with script are shown as text: no element is made
// of them and no script runs (the page builds its DOM from text, and the
// Content-Security-Policy would refuse inline script anyway).
func TestConsoleShowsHostileDataAsText(t *testing.T) {
	sim := startSim(t)
	const thing = "box-2"
	if _, _, err := sim.CreateThing(`<img src=x onerror=alert(1)>`); err == nil {
		t.Error("the registry took an HTML thing name")
	}
	dev := connectDevice(t, sim, thing)
	ctx := browser(t)
	const img = `<img src=x onerror="window.__xss=1">`
	const script = `<script>window.__xss=2</script>`
	run(ctx, t, "open the live messages", chromedp.Navigate(sim.Endpoint().ConsoleURL),
		chromedp.WaitVisible(chromedp.CSS(`#things`)),
		chromedp.Navigate(strings.SplitN(sim.Endpoint().ConsoleURL, "?", 2)[0]+"/#/messages?f=%23"),
		chromedp.WaitVisible(chromedp.CSS(`#live.on`)))
	if err := sim.Broker().Publish("alarms/"+img, []byte(img+script), 1); err != nil {
		t.Fatal(err)
	}
	dev.publish(t, "alarms/"+thing, `{"note":`+jsString(img+script)+`}`)
	waitJS(ctx, t, "the hostile topic shown as text", `[...document.querySelectorAll('#messages .topic')].some(e => e.textContent === `+jsString("alarms/"+img)+`)`)
	waitJS(ctx, t, "the hostile payloads shown as text", `document.querySelectorAll('#messages .payload').length === 2 && [...document.querySelectorAll('#messages .payload')].every(e => e.textContent.includes('<img src=x onerror=') && e.textContent.includes('<script>window.__xss=2</script>'))`)
	dev.publish(t, "$aws/things/"+thing+"/shadow/update", `{"state":{"reported":{"note":`+jsString(img+script)+`}}}`)
	run(ctx, t, "open the thing", chromedp.Navigate(strings.SplitN(sim.Endpoint().ConsoleURL, "?", 2)[0]+"/#/thing/"+thing))
	waitJS(ctx, t, "the hostile shadow value shown as text", `(document.querySelector('#shadow-reported')||{textContent: ''}).textContent.includes('<img src=x onerror=')`)
	screenshot(ctx, t, "hostile")
	type result struct {
		Elements int  `json:"elements"`
		Ran      bool `json:"ran"`
	}
	injected, err := chromedp.Run(ctx, chromedp.Evaluate[result](
		`({elements: document.querySelectorAll('main img, main script, main [onerror]').length, ran: window.__xss !== undefined})`))
	if err != nil {
		t.Fatal(err)
	}
	if injected.Elements != 0 || injected.Ran {
		t.Errorf("hostile data made %d elements, script ran: %v", injected.Elements, injected.Ran)
	}
}
