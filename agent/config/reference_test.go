package config

import (
	"os"
	"reflect"
	"regexp"
	"strings"
	"testing"
)

// TestEveryKeyDocumented walks Config's JSON keys and asserts that
// configs/README.md, the config reference, has a table row for each: the
// top-level keys in "Top level", every other key in the section of its
// top-level key, as "| `key` |" with its path from any level down (e.g.
// `tpm.device` or `device` under identity; `driver` under sensors).
func TestEveryKeyDocumented(t *testing.T) {
	data, err := os.ReadFile("../../configs/README.md")
	if err != nil {
		t.Fatal(err)
	}
	sections := map[string]string{} // a name in a "### " heading -> the section
	parts := strings.Split(string(data), "\n### ")
	heading := regexp.MustCompile("`([a-z_]+)`")
	for _, p := range parts[1:] {
		title, _, _ := strings.Cut(p, "\n")
		if title == "Top level" {
			sections[""] = p
		}
		for _, m := range heading.FindAllStringSubmatch(title, -1) {
			sections[m[1]] += p
		}
	}
	if sections[""] == "" {
		t.Fatal(`configs/README.md has no "### Top level" section`)
	}
	row := func(key string) string { return "| `" + key + "` |" }
	var n int
	var walk func(path []string, typ reflect.Type)
	walk = func(path []string, typ reflect.Type) {
		for typ.Kind() == reflect.Pointer || typ.Kind() == reflect.Slice {
			typ = typ.Elem()
		}
		if typ.Kind() == reflect.Struct && len(path) > 0 {
			if len(path) == 1 && !strings.Contains(sections[""], row(path[0])) {
				t.Errorf("configs/README.md: the Top level table lacks %s", path[0])
			}
			if len(path) == 1 && sections[path[0]] == "" {
				t.Errorf("configs/README.md has no section for %s", path[0])
			}
		}
		if typ.Kind() != reflect.Struct {
			n++
			section := sections[path[0]]
			if len(path) == 1 {
				section = sections[""]
			}
			for i := range path {
				if strings.Contains(section, row(strings.Join(path[i:], "."))) {
					return
				}
			}
			t.Errorf("configs/README.md does not document %s (want a row %s in the section of %s)",
				strings.Join(path, "."), row(strings.Join(path[1:], ".")), path[0])
			return
		}
		for i := range typ.NumField() {
			f := typ.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if name == "" || name == "-" {
				t.Errorf("%s.%s has no JSON name", strings.Join(path, "."), f.Name)
				continue
			}
			walk(append(path[:len(path):len(path)], name), f.Type)
		}
	}
	walk(nil, reflect.TypeFor[Config]())
	if n < 50 {
		t.Errorf("walked %d keys; the Config type has more", n)
	}
}
