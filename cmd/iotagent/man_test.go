package main

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const (
	manPath       = "../../packaging/iotagent.1"
	manBegin      = `.\" BEGIN COMMANDS: generated from the command table; go test ./cmd/iotagent -run Golden -update rewrites it`
	manEnd        = `.\" END COMMANDS`
	manEscapeRepl = "\\"
)

// roff escapes text for the man page: backslashes, and a line starting
// with a dot or a quote would be a request.
func roff(s string) string {
	s = strings.ReplaceAll(s, manEscapeRepl, `\e`)
	s = strings.ReplaceAll(s, "-", `\-`)
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		if strings.HasPrefix(l, ".") || strings.HasPrefix(l, "'") {
			lines[i] = `\&` + l
		}
	}
	return strings.Join(lines, "\n")
}

// manCommands is the man page's COMMANDS section: every command of the
// table with its help text and flags.
func manCommands() string {
	var b strings.Builder
	b.WriteString(manBegin + "\n.SH COMMANDS\n")
	for _, c := range leaves() {
		fmt.Fprintf(&b, ".TP\n.B iotagent %s", roff(c.name))
		if c.args != "" {
			fmt.Fprintf(&b, " \\fI%s\\fR", roff(c.args))
		}
		b.WriteString("\n")
		for i, para := range strings.Split(strings.TrimSpace(c.long), "\n\n") {
			if i > 0 {
				b.WriteString(".IP\n")
			}
			b.WriteString(roff(para) + "\n")
		}
		fs, _, _ := c.flagSet()
		var flags []string
		fs.VisitAll(func(f *flag.Flag) {
			name, usage := flag.UnquoteUsage(f)
			s := `\fB\-\-` + roff(f.Name) + `\fR`
			if name != "" {
				s += ` \fI` + roff(name) + `\fR`
			}
			flags = append(flags, s+" \u2014 "+roff(strings.ReplaceAll(usage, "\n", " ")))
		})
		if len(flags) > 0 {
			b.WriteString(".IP\nFlags:\n.br\n" + strings.Join(flags, "\n.br\n") + "\n")
		}
	}
	b.WriteString(manEnd + "\n")
	return b.String()
}

// TestManPageCommandsGolden: the man page's COMMANDS section is the
// command table's, every command with its help and flags.
func TestManPageCommandsGolden(t *testing.T) {
	data, err := os.ReadFile(manPath)
	if err != nil {
		t.Fatal(err)
	}
	man := string(data)
	i, j := strings.Index(man, manBegin), strings.Index(man, manEnd)
	if i < 0 || j < i {
		t.Fatalf("%s lacks the lines %q and %q around the COMMANDS section", manPath, manBegin, manEnd)
	}
	have := man[i : j+len(manEnd)+1]
	want := manCommands()
	if *update {
		if err := os.WriteFile(manPath, []byte(man[:i]+want+man[j+len(manEnd)+1:]), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	if diff := cmp.Diff(want, have); diff != "" {
		t.Errorf("%s COMMANDS (-want +got; go test ./cmd/iotagent -run Golden -update):\n%s", manPath, diff)
	}
	for _, c := range leaves() {
		if !strings.Contains(have, ".B iotagent "+roff(c.name)+"\n") && !strings.Contains(have, ".B iotagent "+roff(c.name)+" ") {
			t.Errorf("the man page lacks iotagent %s", c.name)
		}
	}
}
