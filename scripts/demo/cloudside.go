package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/iotagent/iotagent/cloud"
)

const ruleName = "chocolate_box_alarms"

// cloudSide is the chocolate security system's backend and frontend as the
// demo runs them: the topic rule, a webhook standing in for the function
// the rule posts to, and the web console (whose live view the demo reads
// as a browser would).
type cloudSide struct {
	sim      *cloud.Sim
	base     string // http://host:port/console
	token    string
	hook     *http.Server
	posts    chan string
	messages chan string // topics the console's live view streamed
	stream   io.Closer
}

func startCloudSide(ctx context.Context, sim *cloud.Sim) (*cloudSide, error) {
	ep := sim.Endpoint()
	u, err := url.Parse(ep.ConsoleURL)
	if err != nil || ep.ConsoleURL == "" {
		return nil, fmt.Errorf("console_url %q: %v", ep.ConsoleURL, err)
	}
	cs := &cloudSide{sim: sim, token: u.Query().Get("token"), posts: make(chan string, 16), messages: make(chan string, 64)}
	u.RawQuery = ""
	cs.base = u.String()

	// The webhook: what the backend's function would get.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("webhook: %w", err)
	}
	cs.hook = &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(io.LimitReader(r.Body, 64<<10))
		select {
		case cs.posts <- fmt.Sprintf("%s %s (x-box: %s) %s", r.Method, r.URL.Path, r.Header.Get("X-Box"), b):
		default:
		}
	})}
	go func() { _ = cs.hook.Serve(ln) }()
	hookURL := "http://" + ln.Addr().String() + "/alarm"

	step("creating the topic rule %s from %s, plus an http action to the webhook %s", ruleName, ruleFile, hookURL)
	b, err := os.ReadFile(ruleFile)
	if err != nil {
		return nil, fmt.Errorf("rule: %w", err)
	}
	var payload map[string]any
	if err := json.Unmarshal(b, &payload); err != nil {
		return nil, fmt.Errorf("%s: %w", ruleFile, err)
	}
	actions, _ := payload["actions"].([]any)
	payload["actions"] = append(actions, map[string]any{"http": map[string]any{"url": hookURL,
		"headers": []any{map[string]any{"key": "x-box", "value": "${topic(2)}"}}}})
	// What aws iot create-topic-rule --topic-rule-payload sends.
	if err := sim.Client().Call(ctx, "iot", http.MethodPost, "/rules/"+ruleName, nil, payload, nil); err != nil {
		return nil, fmt.Errorf("create-topic-rule %s: %w", ruleName, err)
	}

	step("web console (open it in a browser on this machine):")
	fmt.Printf("\n    %s\n\n", ep.ConsoleURL)
	// The console's live view, as the Messages page opens it.
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, cs.base+"/api/stream?filter=alarms/%23&filter=notifications/%23", nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+cs.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("console live view: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, fmt.Errorf("console live view: %s", resp.Status)
	}
	cs.stream = resp.Body
	go func() {
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		event := ""
		for sc.Scan() {
			line := sc.Text()
			if e, ok := strings.CutPrefix(line, "event: "); ok {
				event = e
			}
			if d, ok := strings.CutPrefix(line, "data: "); ok && event == "message" {
				var m struct {
					Topic   string `json:"topic"`
					Payload string `json:"payload"`
				}
				if json.Unmarshal([]byte(d), &m) == nil {
					select {
					case cs.messages <- m.Topic + " " + m.Payload:
					default:
					}
				}
			}
		}
	}()
	return cs, nil
}

// arm does what the console's Arm button does.
func (cs *cloudSide) arm(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, cs.base+"/api/things/"+thing+"/shadow",
		strings.NewReader(`{"state":{"desired":{"alarm":{"armed":true}}}}`))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+cs.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("arm in the console: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("arm in the console: %s %s", resp.Status, bytes.TrimSpace(b))
	}
	return nil
}

// check waits for the alarm in the console's live view (the alarm and the
// rule's notification) and at the webhook.
func (cs *cloudSide) check(ctx context.Context) error {
	want := map[string]bool{"alarms/" + thing: false, "notifications/" + thing: false}
	for done := 0; done < len(want); {
		select {
		case m := <-cs.messages:
			topic, payload, _ := strings.Cut(m, " ")
			if seen, ok := want[topic]; ok && !seen {
				want[topic] = true
				done++
				fmt.Printf("    the console's live view shows %s: %s\n", topic, payload)
			}
		case <-ctx.Done():
			return fmt.Errorf("the console's live view did not show %v", want)
		}
	}
	select {
	case p := <-cs.posts:
		fmt.Printf("    the webhook got: %s\n", p)
	case <-ctx.Done():
		return errors.New("the webhook got no alarm")
	}
	m := cs.sim.Rules().Metrics().Rules[ruleName]
	fmt.Printf("    rule %s: %d evaluated, %d matched, %d actions succeeded, %d failed (the console's Rules page)\n",
		ruleName, m.Evaluated, m.Matched, m.ActionsSucceeded, m.ActionsFailed)
	return nil
}

func (cs *cloudSide) close() {
	if cs.stream != nil {
		cs.stream.Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = cs.hook.Shutdown(ctx)
}
