package moduletest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// readmeSection is the heading of the README section whose first ```go
// block is the plugin that TestPluginFromEmptyFolder builds.
const readmeSection = "## Writing a plugin"

// maxReadmePluginLines bounds that plugin, package clause, imports and
// main included: writing a plugin takes this little.
const maxReadmePluginLines = 30

// readmeSectionText returns the text of the README section under
// readmeSection, up to the next heading of the same level.
func readmeSectionText(tb testing.TB, root string) string {
	tb.Helper()
	data, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		tb.Fatal(err)
	}
	_, section, ok := strings.Cut(string(data), "\n"+readmeSection+"\n")
	if !ok {
		tb.Fatalf("README.md has no %q heading", readmeSection)
	}
	if i := strings.Index(section, "\n## "); i >= 0 {
		section = section[:i]
	}
	return section
}

// readmePlugin returns the first ```go block of the README's "Writing a
// plugin" section.
func readmePlugin(tb testing.TB, root string) string {
	tb.Helper()
	section := readmeSectionText(tb, root)
	_, block, ok := strings.Cut(section, "\n```go\n")
	if !ok {
		tb.Fatalf("README.md: the %q section has no ```go block", readmeSection)
	}
	code, _, ok := strings.Cut(block, "\n```\n")
	if !ok {
		tb.Fatalf("README.md: the first ```go block of %q is not closed", readmeSection)
	}
	return code + "\n"
}
