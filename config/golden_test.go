package config

import (
	"encoding/json"
	"flag"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the expected output of the golden files in testdata/parse")

// goldenSeparator separates input and expected output in a golden file.
const goldenSeparator = "\n----------\n"

// TestParseGolden runs every testdata/parse/*.txt file: YAML input, a line
// of ten dashes, then the expected output. Comment lines "# env: NAME=value"
// in the input set environment variables for that case (and nothing else
// of the process environment is seen). The output is the parse error, or
// the difference from the defaults as lines "~ path: value" (changed),
// "+ path: value" (added) and "- path" (removed); "(defaults)" when there is
// none. The working directory shows as $CWD.
func TestParseGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/parse/*.txt")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no golden files in testdata/parse")
	}
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".txt"), func(t *testing.T) {
			b, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			input, want, ok := strings.Cut(string(b), goldenSeparator)
			if !ok {
				t.Fatalf("%s: no %q separator line", file, strings.TrimSpace(goldenSeparator))
			}
			got := goldenOutput(t, input)
			if *update {
				if err := os.WriteFile(file, []byte(input+goldenSeparator+got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			if got != want {
				t.Errorf("%s: output differs (run with -update to accept)\ngot:\n%s\nwant:\n%s", file, got, want)
			}
		})
	}
}

// goldenOutput parses input as a golden case and formats the outcome.
func goldenOutput(t testing.TB, input string) string {
	t.Helper()
	var environ []string
	for line := range strings.Lines(input) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "# env: "); ok {
			environ = append(environ, v)
		}
	}
	c, err := parse([]byte(input), "dw.yaml", func() []string { return environ })
	if err != nil {
		return err.Error() + "\n"
	}
	defaults, err := parse(nil, "defaults", func() []string { return nil })
	if err != nil {
		t.Fatal(err)
	}
	return diffConfigs(t, defaults, c)
}

// diffConfigs formats how c differs from base, key path by key path.
func diffConfigs(t testing.TB, base, c *Config) string {
	t.Helper()
	cwd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	before, after := map[string]string{}, map[string]string{}
	flattenForDiff(t, "", base.Redacted(), before)
	flattenForDiff(t, "", c.Redacted(), after)
	var lines []string
	for _, k := range slices.Sorted(maps.Keys(after)) {
		v := strings.ReplaceAll(after[k], cwd, "$CWD")
		switch old, ok := before[k]; {
		case !ok:
			lines = append(lines, fmt.Sprintf("+ %s: %s", k, v))
		case old != after[k]:
			lines = append(lines, fmt.Sprintf("~ %s: %s", k, v))
		}
	}
	for _, k := range slices.Sorted(maps.Keys(before)) {
		if _, ok := after[k]; !ok {
			lines = append(lines, "- "+k)
		}
	}
	slices.SortStableFunc(lines, func(a, b string) int { return strings.Compare(a[2:], b[2:]) })
	if len(lines) == 0 {
		return "(defaults)\n"
	}
	return strings.Join(lines, "\n") + "\n"
}

// flattenForDiff flattens m into out: key path to the JSON of a leaf (a
// scalar, a list or an empty mapping).
func flattenForDiff(t testing.TB, prefix string, m map[string]any, out map[string]string) {
	t.Helper()
	for k, v := range m {
		p := pathSegment(k)
		if prefix != "" {
			p = prefix + "." + p
		}
		if sub, ok := v.(map[string]any); ok && len(sub) > 0 {
			flattenForDiff(t, p, sub, out)
			continue
		}
		j, err := json.Marshal(v)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		out[p] = string(j)
	}
}
