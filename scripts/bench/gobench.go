package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
)

// GoBench is one benchmark over every -count run.
type GoBench struct {
	Pkg, Name                        string
	NsPerOp, BytesPerOp, AllocsPerOp []float64
	// Other holds what a benchmark reports with b.ReportMetric, by unit
	// ("msgs/s"), one value per run.
	Other map[string][]float64
}

// parseGoBench reads `go test -bench -benchmem` output: "pkg: P" lines name
// the package of the benchmark lines that follow. Lines it does not
// understand are skipped; the order of first appearance is kept.
func parseGoBench(r io.Reader) ([]GoBench, error) {
	var out []GoBench
	idx := map[string]int{}
	pkg := ""
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if p, ok := strings.CutPrefix(line, "pkg: "); ok {
			pkg = strings.TrimSpace(p)
			continue
		}
		f := strings.Fields(line)
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") {
			continue
		}
		if _, err := strconv.ParseInt(f[1], 10, 64); err != nil {
			continue // not an iterations column
		}
		name := f[0]
		// Drop the -GOMAXPROCS suffix.
		if i := strings.LastIndexByte(name, '-'); i > 0 {
			if _, err := strconv.Atoi(name[i+1:]); err == nil {
				name = name[:i]
			}
		}
		vals := map[string]float64{}
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				break
			}
			vals[f[i+1]] = v
		}
		ns, ok := vals["ns/op"]
		if !ok {
			continue
		}
		key := pkg + " " + name
		k, seen := idx[key]
		if !seen {
			k = len(out)
			idx[key] = k
			out = append(out, GoBench{Pkg: shortPkg(pkg), Name: strings.TrimPrefix(name, "Benchmark")})
		}
		g := &out[k]
		g.NsPerOp = append(g.NsPerOp, ns)
		if v, ok := vals["B/op"]; ok {
			g.BytesPerOp = append(g.BytesPerOp, v)
		}
		if v, ok := vals["allocs/op"]; ok {
			g.AllocsPerOp = append(g.AllocsPerOp, v)
		}
		for unit, v := range vals {
			switch unit {
			case "ns/op", "B/op", "allocs/op":
				continue
			}
			if g.Other == nil {
				g.Other = map[string][]float64{}
			}
			g.Other[unit] = append(g.Other[unit], v)
		}
	}
	if err := sc.Err(); err != nil {
		return out, fmt.Errorf("read benchmark output: %w", err)
	}
	return out, nil
}

func shortPkg(p string) string { return strings.TrimPrefix(p, module+"/") }

// runGoBench runs the hot-path benchmarks and parses them. The raw output
// is kept in rawPath for anyone who wants benchstat.
func runGoBench(ctx context.Context, pkgs []string, count int, benchtime, rawPath string) ([]GoBench, error) {
	args := append([]string{"test", "-run", "^$", "-bench", ".", "-benchmem",
		"-count", strconv.Itoa(count), "-benchtime", benchtime}, pkgs...)
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if rawPath != "" {
		_ = os.WriteFile(rawPath, out, 0o644)
	}
	got, perr := parseGoBench(strings.NewReader(string(out)))
	if err != nil {
		// A package that does not build or a failing benchmark: keep what
		// the others measured and say so.
		return got, fmt.Errorf("go %s: %w (partial results kept)", strings.Join(args, " "), err)
	}
	return got, perr
}
