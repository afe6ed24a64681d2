package sql

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

var errPattern = errors.New("bad time pattern")

// formatJoda formats t with a Joda-Time (java.time) pattern, as
// parse_time does: G era, y year, M month, d day, E day name, a AM/PM, H
// h k K hours, m minutes, s seconds, S fraction, z zone name, Z offset,
// X ISO offset, 'quoted' text.
func formatJoda(pattern string, t time.Time) (string, error) {
	var b strings.Builder
	for i := 0; i < len(pattern); {
		c := pattern[i]
		if c == '\'' {
			end := strings.IndexByte(pattern[i+1:], '\'')
			if end < 0 {
				return "", errPattern
			}
			if end == 0 {
				b.WriteByte('\'')
			} else {
				b.WriteString(pattern[i+1 : i+1+end])
			}
			i += end + 2
			continue
		}
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z') {
			b.WriteByte(c)
			i++
			continue
		}
		n := 1
		for i+n < len(pattern) && pattern[i+n] == c {
			n++
		}
		i += n
		num := func(v int) { fmt.Fprintf(&b, "%0*d", n, v) }
		switch c {
		case 'G':
			if t.Year() > 0 {
				b.WriteString("AD")
			} else {
				b.WriteString("BC")
			}
		case 'y', 'Y', 'u':
			if n == 2 {
				fmt.Fprintf(&b, "%02d", t.Year()%100)
			} else {
				num(t.Year())
			}
		case 'M', 'L':
			switch {
			case n >= 4:
				b.WriteString(t.Month().String())
			case n == 3:
				b.WriteString(t.Month().String()[:3])
			default:
				num(int(t.Month()))
			}
		case 'd':
			num(t.Day())
		case 'D':
			num(t.YearDay())
		case 'E':
			if n >= 4 {
				b.WriteString(t.Weekday().String())
			} else {
				b.WriteString(t.Weekday().String()[:3])
			}
		case 'a':
			if t.Hour() < 12 {
				b.WriteString("AM")
			} else {
				b.WriteString("PM")
			}
		case 'H':
			num(t.Hour())
		case 'k':
			num((t.Hour()+23)%24 + 1)
		case 'K':
			num(t.Hour() % 12)
		case 'h':
			num((t.Hour()+11)%12 + 1)
		case 'm':
			num(t.Minute())
		case 's':
			num(t.Second())
		case 'S':
			frac := fmt.Sprintf("%09d", t.Nanosecond())
			for len(frac) < n {
				frac += "0"
			}
			b.WriteString(frac[:n])
		case 'z':
			name, _ := t.Zone()
			b.WriteString(name)
		case 'Z':
			_, off := t.Zone()
			sign := '+'
			if off < 0 {
				sign, off = '-', -off
			}
			if n == 2 {
				fmt.Fprintf(&b, "%c%02d:%02d", sign, off/3600, off/60%60)
			} else {
				fmt.Fprintf(&b, "%c%02d%02d", sign, off/3600, off/60%60)
			}
		case 'X':
			_, off := t.Zone()
			if off == 0 {
				b.WriteByte('Z')
				break
			}
			sign := '+'
			if off < 0 {
				sign, off = '-', -off
			}
			fmt.Fprintf(&b, "%c%02d:%02d", sign, off/3600, off/60%60)
		default:
			return "", errPattern
		}
	}
	return b.String(), nil
}
