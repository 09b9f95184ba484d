// Package dashboardcheck reads Grafana dashboards as Grafana's own schema describes
// them: strictly, into the Grafana Foundation SDK's types, which Grafana generates from
// its dashboard schema and the schema of each panel plugin and data source. A field the
// schema does not have (a misspelt `gridPos`, an option a stat panel does not take), a
// value of the wrong type, or a required field left out, is an error naming its path;
// except what Grafana itself fills in when it loads a dashboard: a panel option left
// out (the panel plugin's default) and a variable's current value. (Grafana's
// dashboard-linter, the tool for this, is not served by the Go module proxy.)
package dashboardcheck

import (
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/cog/plugins"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
)

// What Grafana fills in on load, where the schema calls a field required.
var filledOnLoad = regexp.MustCompile(`^(panels\[\d+\]\.options\.|templating\.list\[\d+\]\.current\.)`)

const missing = "required field is missing from input"

// refused is what the schema refuses in err, less what Grafana fills in on load.
func refused(err error) []string {
	var all cog.BuildErrors
	if !errors.As(err, &all) {
		return []string{err.Error()}
	}
	var left []string
	for _, e := range all {
		if e.Message == missing && filledOnLoad.MatchString(e.Path) {
			continue
		}
		left = append(left, e.Error())
	}
	return left
}

// Run checks each dashboard file named in args, and prints one line per file: its title
// and panel count, or what the schema refuses. It exits 1 when any file is refused.
func Run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "usage: kseal-cluster dashboard-check DASHBOARD.json...")
		return 2
	}
	// The panel plugins' and data sources' schemas, for panels' options and field
	// config and for their queries.
	plugins.RegisterDefaultPlugins()
	failed := 0
	for _, path := range args {
		raw, err := os.ReadFile(path)
		if err != nil {
			fmt.Fprintf(stderr, "%s: %v\n", path, err)
			failed++
			continue
		}
		var board dashboard.Dashboard
		var problems []string
		if err := board.UnmarshalJSONStrict(raw); err != nil {
			problems = refused(err)
		}
		if len(problems) > 0 {
			for _, p := range problems {
				fmt.Fprintf(stderr, "%s: refused by Grafana's schema: %s\n", path, p)
			}
			failed++
			continue
		}
		title := ""
		if board.Title != nil {
			title = *board.Title
		}
		fmt.Fprintf(stdout, "%s: %q, %d panels, as Grafana's schema describes\n", path, title, len(board.Panels))
	}
	if failed > 0 {
		return 1
	}
	return 0
}
