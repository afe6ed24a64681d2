package transport

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// pahoLog is where paho's process-wide ERROR, CRITICAL and WARN loggers
// write; nil discards. Run points it at its Options.Logger while it runs.
var pahoLog atomic.Pointer[slog.Logger]

func init() {
	// Assigned once, before any goroutine can read them. paho logs every
	// failed connect and every dropped connection at ERROR, several lines
	// each, and "error triggered EOF" when the broker closes the socket on
	// a clean stop; its WARN is store bookkeeping (e.g. "memorystore del:
	// message 1 not found" on every connect). This package logs each
	// attempt and each loss itself, once, with the reason and the next
	// retry (Client.Run), so paho's ERROR and WARN are Debug. CRITICAL (an
	// internal inconsistency in paho) stays above it.
	mqtt.ERROR = pahoLogger{slog.LevelDebug}
	mqtt.CRITICAL = pahoLogger{slog.LevelWarn}
	mqtt.WARN = pahoLogger{slog.LevelDebug}
}

// pahoNoise are paho messages that are not true with AutoReconnect off.
var pahoNoise = []string{
	"reconnection function is nil", // logged on every connection loss without auto-reconnect
}

// pahoLogger adapts slog to paho's Logger interface.
type pahoLogger struct{ level slog.Level }

func (p pahoLogger) Println(v ...any) {
	if l := pahoLog.Load(); l != nil && l.Enabled(context.Background(), p.level) {
		p.log(l, strings.TrimSuffix(fmt.Sprintln(v...), "\n"))
	}
}

func (p pahoLogger) Printf(format string, v ...any) {
	if l := pahoLog.Load(); l != nil && l.Enabled(context.Background(), p.level) {
		p.log(l, fmt.Sprintf(format, v...))
	}
}

func (p pahoLogger) log(l *slog.Logger, msg string) {
	for _, n := range pahoNoise {
		if strings.Contains(msg, n) {
			return
		}
	}
	l.Log(context.Background(), p.level, strings.Join(strings.Fields(msg), " "))
}
