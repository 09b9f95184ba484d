// Package gitserver serves the Git repositories under a directory over Git's smart HTTP
// protocol with Git's own server, git-http-backend, run as a CGI program: the server a
// Flux source-controller clones from in the tests, and the one the tests push to.
package gitserver

import (
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/cgi"
	"os/exec"
	"path/filepath"
	"strings"
)

// Run serves -root on -listen until the process ends. Every bare repository under the
// root is served (GIT_HTTP_EXPORT_ALL); pushes need `http.receivepack` set in the
// repository's config, since no user authenticates.
func Run(args []string, stderr io.Writer) int {
	flags := flag.NewFlagSet("git-server", flag.ContinueOnError)
	flags.SetOutput(stderr)
	root := flags.String("root", "", "the directory holding the bare repositories")
	listen := flags.String("listen", "127.0.0.1:0", "the address to serve on")
	if err := flags.Parse(args); err != nil {
		return 2
	}
	if *root == "" {
		fmt.Fprintln(stderr, "git-server: -root is required")
		return 2
	}
	out, err := exec.Command("git", "--exec-path").Output()
	if err != nil {
		fmt.Fprintf(stderr, "git-server: git --exec-path: %v\n", err)
		return 1
	}
	backend := &cgi.Handler{
		Path: filepath.Join(strings.TrimSpace(string(out)), "git-http-backend"),
		Env:  []string{"GIT_PROJECT_ROOT=" + *root, "GIT_HTTP_EXPORT_ALL=1"},
	}
	if err := http.ListenAndServe(*listen, backend); err != nil {
		fmt.Fprintf(stderr, "git-server: %v\n", err)
		return 1
	}
	return 0
}
